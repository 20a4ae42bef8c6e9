"""``rgbdcast devices`` and ``rgbdcast keygen``: what this machine can serve, and its keys."""

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


def cmd_devices(args: argparse.Namespace) -> int:
    from ..devices.probe import probe_all

    for line in probe_all(args.max_index):
        print(line)
    return 0
