"""``rgbdcast bench``: the runner. It parses the options and runs the suites asked for; each
suite is a module of :mod:`rgbdcast.bench` (codecs, e2e, peers, gateway, web, zenoh,
geometry, rig, foxglove, video, soak)."""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable
from typing import Any

from ..errors import UsageError

__all__ = ["add_parsers", "cmd_bench"]


def add_parsers(sub: Any) -> None:
    p = sub.add_parser(
        "bench",
        help="measure fps, latency, drops and CPU end to end",
        description="Run a mock server and N subscriber processes on this machine, print the "
        "figures and (with --write) record them in BENCHMARKS.md with the command.",
    )
    p.add_argument(
        "--suite",
        choices=["all", *SUITES],
        default="all",
        help="what to measure: the codec table, the end-to-end runs, or both (default all)",
    )
    p.add_argument(
        "--data",
        default=None,
        metavar="DIR",
        help="real depth frames for the codec table ($RGBDCAST_DATA or ../shared/data/depth)",
    )
    p.add_argument(
        "--subscribers",
        type=int,
        nargs="+",
        default=[1, 8],
        help="subscriber counts to run, one run each (default: 1 8)",
    )
    p.add_argument(
        "--streams", default="depth", help="streams to serve and receive (default depth)"
    )
    p.add_argument("--fps", type=float, default=30.0, help="mock frame rate (default 30)")
    p.add_argument("--duration", type=float, default=10.0, help="measured seconds per run")
    p.add_argument("--warmup", type=float, default=2.0, help="seconds before measuring")
    p.add_argument("--port", type=int, default=0, help="control port (default: a free one)")
    p.add_argument("--repeat", type=int, default=1, help="runs of each configuration (default 1)")
    p.add_argument("--depth-codec", default=None, help="serve depth with this codec")
    p.add_argument("--color-codec", default=None, help="serve color with this codec")
    p.add_argument("--color-quality", default=None, type=int, help="JPEG quality to serve")
    p.add_argument("--color-strips", default=None, type=int, help="JPEG strips to serve")
    p.add_argument(
        "--source",
        choices=["mock", "mock-yuy2", "replay"],
        default="mock",
        help="what the server serves: the pre-rendered mock (color encoded on the server from "
        "BGR, or with mock-yuy2 from YUY2 as a Kinect v2 delivers it), or a recording of it "
        "replayed in a loop (color passed through as recorded) (default mock)",
    )
    p.add_argument(
        "--replay",
        metavar="FILE",
        default=None,
        help="with --source replay: this recording (default: record the mock first)",
    )
    p.add_argument(
        "--replay-seconds",
        type=float,
        default=10.0,
        metavar="S",
        help="with --source replay and no FILE: seconds of the mock to record (default 10)",
    )
    p.add_argument(
        "--no-decode",
        action="store_true",
        help="rgbdcast subscribers take frames as sent (EncodedFrame), not decoded",
    )
    p.add_argument(
        "--slow",
        type=int,
        default=0,
        metavar="N",
        help="N of the subscribers read only one frame a second",
    )
    p.add_argument(
        "--slow-compare",
        action="store_true",
        help="with --slow: alternate each run with one without the slow subscribers (the "
        "others alone), and write the two side by side",
    )
    p.add_argument(
        "--no-peer",
        action="store_true",
        help="skip the plain-pyzmq subscribers measured beside ours (the ceiling)",
    )
    p.add_argument(
        "--soak",
        type=float,
        default=None,
        metavar="SECONDS",
        help="instead of the suites: every stream to 8 subscribers (2 reconnecting) for "
        "SECONDS, checking a CRC on every frame; memory and threads over time",
    )
    p.add_argument(
        "--write",
        metavar="FILE",
        nargs="?",
        const="BENCHMARKS.md",
        help="record the results in FILE (default BENCHMARKS.md)",
    )
    p.set_defaults(func=cmd_bench)


SUITES = (
    "codecs",
    "e2e",
    "peers",
    "gateway",
    "web",
    "zenoh",
    "geometry",
    "rig",
    "foxglove",
    "video",
)
"""What ``--suite all`` runs, in order; each is ``rgbdcast.bench.<suite>.cmd_<suite>``."""


def _suite(name: str) -> Callable[[argparse.Namespace], None]:
    module = importlib.import_module(f"rgbdcast.bench.{name}")
    run: Callable[[argparse.Namespace], None] = getattr(module, f"cmd_{name}")
    return run


def cmd_bench(args: argparse.Namespace) -> int:
    if args.soak is not None:
        if args.soak < 10:
            raise UsageError("--soak needs at least 10 seconds")
        _suite("soak")(args)
    else:
        for name in SUITES:
            if args.suite in ("all", name):
                _suite(name)(args)
    if args.write:
        print(f"written to {args.write}")
    return 0
