"""``rgbdcast devices``, ``keygen`` and ``foxglove-layout``: what this machine can serve, its
keys, and a Foxglove layout for its topics."""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["add_parsers"]


def add_parsers(sub: Any) -> None:
    p = sub.add_parser(
        "devices",
        help="list what can be served on this machine",
        description="Probe OpenCV cameras, RealSense devices and the Kinect v2 "
        "runtimes, and name the extras missing for the rest.",
    )
    p.add_argument("--max-index", type=int, default=4, help="camera indices to probe (default 4)")
    p.set_defaults(func=cmd_devices)

    p = sub.add_parser(
        "keygen",
        help="make CurveZMQ key pairs for serve --secure",
        description="Write a server key pair and client key pairs (ZeroMQ certificate files) "
        "into a new folder, with the clients' public keys in DIR/authorized. Give the server "
        "DIR (serve --secure DIR); give each client DIR/server.key and its own .key_secret "
        "(--secure DIR on the client side), over a channel you trust.",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="folder to write the keys into")
    p.add_argument(
        "--client",
        action="append",
        default=[],
        metavar="NAME",
        help="client key pairs to make (default one named client; repeatable)",
    )
    p.set_defaults(func=cmd_keygen)

    p = sub.add_parser(
        "foxglove-layout",
        help="write a Foxglove layout for devices' topics",
        description="A layout to import in the Foxglove app (Layouts, Import from file): the "
        "first device's color with the bodies drawn over it, its depth with a colormap, and a "
        "3-D panel with every device's point cloud and bodies. It works for a live server "
        "(serve --foxglove, bridge --foxglove) and for its recordings alike (docs/foxglove.md).",
    )
    p.add_argument(
        "--device",
        action="append",
        default=[],
        metavar="ID",
        help="device ids, as the topics name them (default mock0; repeatable, first in images)",
    )
    p.add_argument("--out", "-o", metavar="FILE", help="write here (default: standard output)")
    p.set_defaults(func=cmd_foxglove_layout)


def cmd_keygen(args: argparse.Namespace) -> int:
    from ..net.security import fingerprint, keygen

    paths = keygen(args.out, tuple(args.client) or ("client",))
    import zmq.auth

    public, _ = zmq.auth.load_certificate(str(paths["server"]))
    print(f"keys written to {args.out}/ (server fingerprint {fingerprint(public)}):")
    for name, path in paths.items():
        print(f"  {name:<10}{path}  (secret: keep it on that machine only)")
    print(f"  authorized {args.out}/authorized/  (public keys the server accepts)")
    print(f"serve with:    rgbdcast serve --secure {args.out}")
    print(f"connect with:  rgbdcast info tcp://HOST:5606 --secure {args.out}")
    return 0


def cmd_foxglove_layout(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from ..errors import UsageError
    from ..protocol.foxglovelayout import layout

    text = json.dumps(layout(args.device or ["mock0"]), indent=2) + "\n"
    if args.out is None:
        print(text, end="")
        return 0
    try:
        Path(args.out).write_text(text)
    except OSError as exc:
        raise UsageError(f"cannot write {args.out}: {exc.strerror}") from exc
    print(f"layout written to {args.out}: in Foxglove, Layouts, Import from file")
    return 0


def cmd_devices(args: argparse.Namespace) -> int:
    from ..devices.probe import probe_all

    for line in probe_all(args.max_index):
        print(line)
    return 0
