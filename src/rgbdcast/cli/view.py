"""``rgbdcast view``: the web viewer for servers elsewhere (named, or found on Zeroconf), or for
streams in Zenoh."""

from __future__ import annotations

import argparse
import time
from typing import Any

from ..errors import UsageError
from ..net.addresses import DEFAULT_WEB_PORT, parse_hostport
from ..remoteview import RemoteBackend, ZenohBackend
from ..rigview import RigBackend
from .common import add_zenoh_source, client_keys, install_stop_signals

__all__ = ["add_parsers"]


def add_parsers(sub: Any) -> None:
    p = sub.add_parser(
        "view",
        help="watch servers in a web browser",
        description="Serve the web viewer for the servers given, or for servers found on the "
        "network (pick them in the page). Open the printed address in a browser.",
    )
    p.add_argument("endpoint", nargs="*", help="servers to watch, e.g. tcp://host:5606")
    p.add_argument(
        "--web",
        metavar="[HOST:]PORT",
        default=f"127.0.0.1:{DEFAULT_WEB_PORT + 1}",
        help=f"where to serve the page (default 127.0.0.1:{DEFAULT_WEB_PORT + 1})",
    )
    p.add_argument(
        "--no-discover",
        action="store_true",
        help="do not look for servers on Zeroconf (default: look when no endpoint is given)",
    )
    p.add_argument("--interface", action="append", metavar="IP", help="discover on this address")
    add_zenoh_source(p)
    p.add_argument(
        "--rig",
        metavar="FILE",
        default=None,
        help="show a calibrated rig (its rig file, rgbdcast calibrate): every camera's cloud "
        "fused, the skeletons, each camera's frustum and time skew",
    )
    p.add_argument("--secure", metavar="DIR", default=None, help="client keys for --secure servers")
    p.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    p.set_defaults(func=cmd_view)


def cmd_view(args: argparse.Namespace) -> int:
    from ..outlets.webviewer import WebViewer

    host, port = parse_hostport(args.web, "127.0.0.1")
    discover = not args.endpoint and not args.no_discover and not args.zenoh
    backend: RemoteBackend | ZenohBackend | RigBackend
    if args.rig:
        if args.endpoint or args.zenoh:
            raise UsageError("--rig takes its cameras from the rig file: give no endpoints")
        backend = RigBackend(args.rig)
    elif args.zenoh:
        if args.endpoint:
            raise UsageError("give either server endpoints or --zenoh KEYEXPR, not both")
        backend = ZenohBackend(args.zenoh, args.connect)
    else:
        backend = RemoteBackend(list(args.endpoint), discover, args.interface, client_keys(args))
    viewer = WebViewer(host, port, backend)
    try:
        viewer.start()
    except OSError as exc:
        if isinstance(backend, ZenohBackend):
            backend.stop()
        raise UsageError(
            f"cannot listen on {host}:{port}: {exc.strerror} (choose another --web port)"
        ) from exc
    stop = install_stop_signals()
    try:
        backend.start(viewer)
    except BaseException:
        viewer.stop()
        raise
    try:
        print(f"web viewer at {viewer.url}  (open it in a browser)", flush=True)
        if discover:
            print("looking for servers on the network; pick them in the page", flush=True)
        started = time.monotonic()
        while not stop.wait(0.2):
            if args.duration is not None and time.monotonic() - started >= args.duration:
                break
    finally:
        backend.stop()
        viewer.stop()
    return 0
