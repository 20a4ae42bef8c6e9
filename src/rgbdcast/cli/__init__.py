"""The ``rgbdcast`` command. Every subcommand has ``--help``; errors are one line, exit code 2.

Each command group is a module of this package with an ``add_parsers(sub)``; what they share
(the one-line error parser, endpoint, key and Zenoh arguments, stopping on Ctrl-C) is in
:mod:`rgbdcast.cli.common`. Nothing imports from this module but the entry points.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

from .._version import __version__
from ..errors import RgbdcastError
from . import admin, bench, bridge, calibrate, demo, record, serve, view, watch
from .common import OneLineParser

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="rgbdcast",
        description="Stream color, depth, infrared and body frames from RGB-D sensors.",
        epilog="Start with:  rgbdcast serve   then, elsewhere:  rgbdcast discover",
    )
    parser.add_argument("--version", action="version", version=f"rgbdcast {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for group in (serve, watch, admin, demo, view, record, calibrate, bridge, bench):
        group.add_parsers(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING - 10 * min(args.verbose, 2),
        format="%(levelname)s %(name)s: %(message)s",
    )
    if args.command is None:
        parser.print_help()
        return 2
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except KeyboardInterrupt:
        return 130
    except (RgbdcastError, OSError) as exc:
        print(f"rgbdcast {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # translate foreign errors (zmq, numpy) into one line
        name = type(exc).__name__
        print(f"rgbdcast {args.command}: error: {name}: {exc}", file=sys.stderr)
        if args.verbose:
            raise
        return 2
