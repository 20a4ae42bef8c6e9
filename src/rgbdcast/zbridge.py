"""``rgbdcast bridge --zenoh``, ``rgbdcast router`` and the Zenoh options of ``serve``.

How the bridge works: for each rgbdcast server (named, or found on Zeroconf) it holds one
:class:`~rgbdcast.client.Client` subscribed to every stream without decoding; the client's I/O
thread hands each frame, with the header exactly as received, to that stream's
:class:`~rgbdcast.outlets.zenoh.StreamSender` (a latest-frame slot and its own thread), so a
stuck Zenoh link never slows the ZeroMQ side. Devices are announced (liveliness and ``@meta``)
as their server describes them, and withdrawn when they or their server go away.
"""

from __future__ import annotations

import argparse
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from .errors import RgbdcastError, UsageError
from .frames import StreamKind
from .net.addresses import make_endpoint, parse_endpoint
from .outlets.ros2 import Ros2Publishing
from .outlets.zenoh import ZenohLink, ZenohOptions, ZenohPublishing

__all__ = ["Bridge", "add_parsers", "add_zenoh_options", "zenoh_options"]

log = logging.getLogger(__name__)

SYNC_S = 0.5


def add_zenoh_options(p: argparse.ArgumentParser, prefix: str = "") -> None:
    """``--[prefix]connect``, ``--[prefix]listen``, ``--[prefix]mode``, multicast and TLS."""
    p.add_argument(
        f"--{prefix}connect",
        action="append",
        default=[],
        metavar="ENDPOINT",
        help="Zenoh endpoint to connect to, e.g. tcp/10.0.0.5:7447 (repeatable)",
    )
    p.add_argument(
        f"--{prefix}listen",
        action="append",
        default=[],
        metavar="ENDPOINT",
        help="Zenoh endpoint to listen on, e.g. tcp/0.0.0.0:7447 (repeatable)",
    )
    p.add_argument(f"--{prefix}mode", choices=["peer", "client"], default="peer", help="Zenoh mode")
    p.add_argument(
        f"--{prefix}multicast",
        action="store_true",
        help="let Zenoh scout for peers by multicast (off by default)",
    )
    p.add_argument(
        f"--{prefix}tls",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a Zenoh TLS setting, e.g. root_ca_certificate=ca.pem (repeatable)",
    )


ROS2_ROUTER = "tcp/127.0.0.1:7447"
"""Where rmw_zenoh's router (``ros2 run rmw_zenoh_cpp rmw_zenohd``) listens by default."""


def zenoh_options(
    args: argparse.Namespace, prefix: str = "", mode: str | None = None, ros2: bool = False
) -> ZenohOptions:
    """The Zenoh options given with ``--[prefix]connect`` and the rest; for ROS 2 with no
    endpoint given, connect to rmw_zenoh's router on this machine."""
    attr = prefix.replace("-", "_")
    connect = tuple(getattr(args, f"{attr}connect"))
    listen = tuple(getattr(args, f"{attr}listen"))
    if ros2 and not (connect or listen):
        connect = (ROS2_ROUTER,)
    tls = {}
    for item in getattr(args, f"{attr}tls"):
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise UsageError(f"--{prefix}tls takes NAME=VALUE, got {item!r}")
        tls[name] = value
    return ZenohOptions(
        mode=mode or getattr(args, f"{attr}mode"),
        connect=connect,
        listen=listen,
        multicast=getattr(args, f"{attr}multicast"),
        tls=tls,
    )


def check_domain(domain: int) -> int:
    if not 0 <= domain <= 232:
        raise UsageError(f"--domain must be 0..232 (a ROS_DOMAIN_ID), got {domain}")
    return domain


def add_zenoh_source(p: argparse.ArgumentParser) -> None:
    """``--zenoh KEYEXPR`` and ``--connect ENDPOINT``: watch Zenoh instead of a server."""
    p.add_argument(
        "--zenoh",
        metavar="KEYEXPR",
        default=None,
        help="watch the streams matching a Zenoh key expression instead, e.g. 'rgbdcast/**' "
        "or 'rgbdcast/lab/*/depth' (with --connect)",
    )
    p.add_argument(
        "--connect",
        action="append",
        default=[],
        metavar="ENDPOINT",
        help="Zenoh router or peer for --zenoh, e.g. tcp/10.0.0.5:7447",
    )


class Bridge:
    """Republish rgbdcast servers into Zenoh."""

    def __init__(
        self,
        link: ZenohLink,
        endpoints: list[str],
        interfaces: list[str] | None = None,
        *,
        native: bool = True,
        ros2_domain: int | None = None,
    ) -> None:
        self.link = link
        self._native = native
        self._ros2_domain = ros2_domain
        self._ros: dict[str, Ros2Publishing] = {}
        self._endpoints = [make_endpoint(*parse_endpoint(ep)) for ep in endpoints]
        self._interfaces = interfaces
        self._clients: dict[str, Any] = {}
        self._publishing: dict[str, ZenohPublishing] = {}
        self._subs: dict[str, dict[tuple[str, StreamKind], Any]] = {}
        self._browser: Any = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="rgbdcast-bridge-sync")

    def start(self) -> None:
        if not self._endpoints:
            from .net.discovery import ServerBrowser

            self._browser = ServerBrowser(interfaces=self._interfaces)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5.0)
        if self._browser is not None:
            self._browser.close()
        for endpoint in list(self._clients):
            self._drop(endpoint)

    @property
    def bridged(self) -> dict[str, list[str]]:
        """Server endpoint -> device ids published."""
        return {ep: pub.devices for ep, pub in self._publishing.items()}

    def _loop(self) -> None:
        while not self._stop.wait(SYNC_S):
            wanted = list(self._endpoints)
            if self._browser is not None:
                wanted += [s.endpoint for s in self._browser.servers]
            for endpoint in wanted:
                try:
                    self._sync(endpoint)
                except RgbdcastError as exc:
                    log.debug("bridging %s: %s", endpoint, exc)
            for endpoint in set(self._clients) - set(wanted):
                self._drop(endpoint)

    def _sync(self, endpoint: str) -> None:
        from .client import Client

        client = self._clients.get(endpoint)
        if client is None:
            client = Client(endpoint, reconnect=True)
            client.connect(timeout=2.0)
            client.on_frame.connect(self._on_frame, sender=client, weak=False)
            self._clients[endpoint] = client
            self._subs[endpoint] = {}
            log.info("bridging %s (%s) into Zenoh", endpoint, client.server_name)
        pub = self._publishing.get(endpoint)
        if pub is None and client.server_name:
            pub = self._publishing[endpoint] = ZenohPublishing(self.link, client.server_name)
            if self._ros2_domain is not None:
                self._ros[endpoint] = Ros2Publishing(
                    self.link, self._ros2_domain, client.server_name
                )
        if pub is None:
            return
        ros = self._ros.get(endpoint)
        devices = client.devices if client.is_connected else {}
        for dev_id in set(pub.devices) - set(devices):  # unplugged, or its server went away
            pub.remove_device(dev_id)
            if ros is not None:
                ros.remove_device(dev_id)
            for key in [k for k in self._subs[endpoint] if k[0] == dev_id]:
                self._subs[endpoint].pop(key).close()
        for dev_id, record in devices.items():
            if dev_id not in pub.devices:
                info = {"id": dev_id, "name": record.name, "streams": record.streams, **record.info}
                # a presence entry even when only ROS 2 is asked for: it tracks what is bridged
                pub.add_device(dev_id, list(record.streams) if self._native else [], _const(info))
                if ros is not None:
                    ros.add_device(dev_id, [StreamKind(k) for k in record.streams])
            for stream in record.streams:
                key = (dev_id, StreamKind(stream))
                if key not in self._subs[endpoint]:
                    self._subs[endpoint][key] = client.subscribe(
                        dev_id, stream, decode=False, queue_size=1
                    )

    def _on_frame(self, client: Any, frame: Any = None, subscription: Any = None) -> None:
        """On the client's I/O thread: hand the frame on as received; never wait."""
        subscription.latest(timeout=0)  # keep its queue empty: the sender has the newest
        endpoint = client.control_endpoint
        pub = self._publishing.get(endpoint)
        sender = pub.sender(frame.device_id, frame.kind.value) if pub is not None else None
        if sender is not None:
            sender.submit(None, frame.raw_header, frame.payload, codec=frame.header.codec)
        ros = self._ros.get(endpoint)
        ros_sender = ros.sender(frame.device_id, frame.kind) if ros is not None else None
        if ros_sender is not None:
            ros_sender.submit(None, frame.raw_header, frame.payload)

    def _drop(self, endpoint: str) -> None:
        client = self._clients.pop(endpoint, None)
        pub = self._publishing.pop(endpoint, None)
        if pub is not None:
            pub.close()
        ros = self._ros.pop(endpoint, None)
        if ros is not None:
            ros.close()
        self._subs.pop(endpoint, None)
        if client is not None:
            client.on_frame.disconnect(self._on_frame, sender=client)
            client.disconnect()


def add_parsers(sub: Any) -> None:
    p = sub.add_parser(
        "bridge",
        help="republish rgbdcast servers into Zenoh",
        description="Publish every stream of the servers given (or found on Zeroconf) into "
        "Zenoh under rgbdcast/<server>/<device>/<stream>, already encoded.",
    )
    p.add_argument("endpoint", nargs="*", help="servers to bridge (default: discovered ones)")
    p.add_argument("--zenoh", action="store_true", help="bridge into Zenoh (rgbdcast keys)")
    p.add_argument(
        "--ros2", action="store_true", help="also (or only) appear as ROS 2 topics (rmw_zenoh)"
    )
    p.add_argument("--domain", type=int, default=0, metavar="N", help="ROS_DOMAIN_ID (default 0)")
    add_zenoh_options(p)
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


def _wait(duration: float | None) -> None:
    from .cli import _install_stop_signals

    stop = threading.Event()
    _install_stop_signals(stop)
    started = time.monotonic()
    while not stop.wait(0.2):
        if duration is not None and time.monotonic() - started >= duration:
            break


def cmd_bridge(args: argparse.Namespace) -> int:
    if not (args.zenoh or args.ros2):
        raise UsageError("say where to bridge to: rgbdcast bridge --zenoh|--ros2 [ENDPOINT ...]")
    check_domain(args.domain)
    with ZenohLink(zenoh_options(args, ros2=args.ros2)) as link:
        bridge = Bridge(
            link,
            list(args.endpoint),
            args.interface,
            native=args.zenoh,
            ros2_domain=args.domain if args.ros2 else None,
        )
        bridge.start()
        what = ", ".join(args.endpoint) or "servers found on the network"
        print(f"bridging {what} into Zenoh (Ctrl-C to stop)", flush=True)
        try:
            _wait(args.duration)
        finally:
            bridge.stop()
    return 0


def cmd_router(args: argparse.Namespace) -> int:
    args.mode = "router"
    args.listen = args.listen or ["tcp/0.0.0.0:7447"]
    with ZenohLink(zenoh_options(args, mode="router")):
        print(f"Zenoh router listening on {', '.join(args.listen)} (Ctrl-C to stop)", flush=True)
        _wait(args.duration)
    return 0


def _const(value: dict[str, Any]) -> Callable[[], dict[str, Any]]:
    return lambda: value
