"""``rgbdcast bridge`` (servers into Zenoh and ROS 2) and ``rgbdcast router`` (a Zenoh router)."""

from __future__ import annotations

import argparse
import contextlib
from typing import Any

from ..bridge import Bridge
from ..errors import UsageError
from ..outlets.zenoh import ZenohLink
from .common import (
    add_foxglove_options,
    add_zenoh_options,
    check_domain,
    foxglove_options,
    wait_until_stopped,
    zenoh_options,
)

__all__ = ["add_parsers"]


def add_parsers(sub: Any) -> None:
    p = sub.add_parser(
        "bridge",
        help="republish rgbdcast servers into Zenoh, ROS 2 or Foxglove",
        description="Publish every stream of the servers given (or found on Zeroconf) into "
        "Zenoh under rgbdcast/<server>/<device>/<stream>, already encoded; as ROS 2 topics; "
        "or to Foxglove clients (docs/foxglove.md).",
    )
    p.add_argument("endpoint", nargs="*", help="servers to bridge (default: discovered ones)")
    p.add_argument("--zenoh", action="store_true", help="bridge into Zenoh (rgbdcast keys)")
    p.add_argument(
        "--ros2", action="store_true", help="also (or only) appear as ROS 2 topics (rmw_zenoh)"
    )
    p.add_argument("--domain", type=int, default=0, metavar="N", help="ROS_DOMAIN_ID (default 0)")
    p.add_argument(
        "--rig",
        metavar="FILE",
        default=None,
        help="with --ros2 or --foxglove: a rig file (docs/rig.md); /tf_static (Foxglove: /tf) "
        "then also places each device's depth camera in the rig frame",
    )
    add_zenoh_options(p)
    add_foxglove_options(p, flag=True)
    p.add_argument("--interface", action="append", metavar="IP", help="discover on this address")
    p.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    p.set_defaults(func=cmd_bridge)

    p = sub.add_parser(
        "router",
        help="run a Zenoh router (join sites and many consumers)",
        description="A Zenoh router in this process: servers, bridges and consumers connect to "
        "it; routers connect to each other to join sites. For production, Eclipse's zenohd "
        "does the same job (see docs/zenoh.md).",
    )
    p.add_argument(
        "--listen",
        action="append",
        default=[],
        metavar="ENDPOINT",
        help="where to listen (default tcp/0.0.0.0:7447; repeatable)",
    )
    p.add_argument(
        "--connect", action="append", default=[], metavar="ENDPOINT", help="another router"
    )
    p.add_argument(
        "--tls", action="append", default=[], metavar="NAME=VALUE", help="a Zenoh TLS setting"
    )
    p.add_argument("--multicast", action="store_true", help="scout by multicast (off)")
    p.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    p.set_defaults(func=cmd_router)


def cmd_bridge(args: argparse.Namespace) -> int:
    if not (args.zenoh or args.ros2 or args.foxglove):
        raise UsageError(
            "say where to bridge to: rgbdcast bridge --zenoh|--ros2|--foxglove [ENDPOINT ...]"
        )
    check_domain(args.domain)
    rig_file = None
    if args.rig is not None:
        from ..rig import load_rig_file

        if not (args.ros2 or args.foxglove):
            raise UsageError(
                "--rig places cameras on /tf_static or /tf: it needs --ros2 or --foxglove"
            )
        rig_file = load_rig_file(args.rig)
    with contextlib.ExitStack() as stack:
        link = None
        if args.zenoh or args.ros2:
            link = stack.enter_context(ZenohLink(zenoh_options(args, ros2=args.ros2)))
        fox = None
        if args.foxglove:
            from ..outlets.foxglove import FoxglovePublishing, FoxgloveServer

            options = foxglove_options(args, args.foxglove_listen)
            options.check(False)
            fox = FoxglovePublishing(FoxgloveServer(options, "rgbdcast bridge"))
            stack.callback(fox.close)
        bridge = Bridge(
            link,
            list(args.endpoint),
            args.interface,
            native=args.zenoh,
            ros2_domain=args.domain if args.ros2 else None,
            rig_file=rig_file,
            foxglove=fox,
        )
        bridge.start()
        stack.callback(bridge.stop)
        what = ", ".join(args.endpoint) or "servers found on the network"
        into = [n for n, on in (("Zenoh", args.zenoh), ("ROS 2", args.ros2)) if on]
        if fox is not None:
            into.append(f"Foxglove at {fox.server.url}")
        print(f"bridging {what} into {', '.join(into)} (Ctrl-C to stop)", flush=True)
        wait_until_stopped(args.duration)
    return 0


def cmd_router(args: argparse.Namespace) -> int:
    args.mode = "router"
    args.listen = args.listen or ["tcp/0.0.0.0:7447"]
    with ZenohLink(zenoh_options(args, mode="router")):
        print(f"Zenoh router listening on {', '.join(args.listen)} (Ctrl-C to stop)", flush=True)
        wait_until_stopped(args.duration)
    return 0
