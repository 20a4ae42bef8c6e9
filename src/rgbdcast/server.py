"""The server: devices in, one control endpoint and one data endpoint per device stream out.

How this works: ``start()`` binds the control REP socket and, for every stream of every device,
a :class:`~rgbdcast.net.publisher.StreamPublisher` (its own XPUB socket and thread). Devices emit
frames on their capture threads; the server routes each to its stream's publisher, which encodes
it once and sends it to all subscribers. who/me is built on the control thread from the current
device registry, so devices added or removed while running show up on a client's next who.
"""

from __future__ import annotations

import logging
import os
import secrets
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import psutil
import zmq

from ._version import __version__
from .devices.base import Device
from .devices.legacy import LegacyKinect
from .errors import DeviceError, UsageError
from .frames import Frame, StreamKind
from .net.addresses import advertise_host, default_bind, make_endpoint
from .net.control import ControlEndpoint
from .net.discovery import Announcer
from .net.publisher import StreamPublisher
from .net.security import ServerKeys, ZapGuard
from .outlets.gateway import TcpGateway
from .outlets.ros2 import Ros2Publishing
from .outlets.webviewer import WebViewer
from .outlets.zenoh import ZenohLink, ZenohOptions, ZenohPublishing
from .protocol.control import PROTOCOL_VERSION, ControlResponder, EndpointType

__all__ = ["Server"]

RETRY_FIRST_S = 0.5
RETRY_MAX_S = 10.0
"""A failed device is retried after 0.5 s, then twice as long each time, at most 10 s apart."""

log = logging.getLogger(__name__)


@dataclass
class _Entry:
    device: Device
    publishers: dict[StreamKind, StreamPublisher] = field(default_factory=dict)
    started_here: bool = False
    failed: bool = False


class Server:
    """A server streaming the frames of its devices to interested clients.

    Use it as a context manager, or call :meth:`start` and :meth:`stop`::

        with Server(address="127.0.0.1", port=5606) as server:
            server.add_device(MockDevice())
            ...

    *address* is the bind address (default ``$RGBDCAST_BIND`` or all interfaces); advertised
    endpoints use a connectable address, never ``0.0.0.0``. *port* is the control port (0 picks
    a free one). *name* is shown to clients; *announce* registers the server on Zeroconf on the
    *interfaces* given (default ``$RGBDCAST_INTERFACES`` or all). *codecs* maps a stream kind to
    its codec name, *codec_params* to that codec's parameters. *zmq_ctx* and *io_loop* are
    accepted for streamkinect2 compatibility (*io_loop* is unused: the server runs its own
    threads).
    """

    def __init__(
        self,
        address: str | None = None,
        start_immediately: bool = False,
        name: str | None = None,
        zmq_ctx: zmq.Context[Any] | None = None,
        io_loop: Any = None,
        announce: bool = True,
        *,
        port: int = 0,
        interfaces: list[str] | None = None,
        codecs: Mapping[StreamKind | str, str] | None = None,
        codec_params: Mapping[StreamKind | str, dict[str, Any]] | None = None,
        tcp_gateway: str | int | None = None,
        gateway_options: Mapping[str, Any] | None = None,
        web: str | int | None = None,
        web_fallback: bool = False,
        zenoh: ZenohOptions | None = None,
        zenoh_native: bool = True,
        ros2_domain: int | None = None,
        ros2_compressed_depth: str = "png",
        secure: ServerKeys | None = None,
        gateway_insecure_ok: bool = False,
        checksums: bool = False,
        zenoh_insecure_ok: bool = False,
    ) -> None:
        self.address = address or default_bind()
        self.name = name or f"rgbdcast on {_hostname()}"
        self.port = int(port)
        if not 0 <= self.port < 65536:
            raise UsageError(f"port must be in 0..65535, got {port}")
        self.announce = announce
        self.interfaces = interfaces
        self._codecs = {StreamKind(k): v for k, v in (codecs or {}).items()}
        self._params = {StreamKind(k): dict(v) for k, v in (codec_params or {}).items()}
        from . import codecs as codec_registry

        for kind, codec in self._codecs.items():
            codec_registry.get(codec, kind)  # raise UsageError now, not on the first frame
        self._given_ctx = zmq_ctx
        self._ctx: zmq.Context[Any] | None = None
        self._entries: dict[str, _Entry] = {}
        self._routes: dict[str, dict[StreamKind, StreamPublisher]] = {}
        self._lock = threading.RLock()
        self._control: ControlEndpoint | None = None
        self._responder = ControlResponder(me=self._me_payload, stats=self.stats)
        self._announcer: Announcer | None = None
        self._stopping = threading.Event()
        self._host = advertise_host(self.address)
        self.endpoints: dict[EndpointType, str] = {}
        self.secure = secure
        self.checksums = checksums
        """Test mode: every frame header carries the CRC-32 of its payload."""
        """CurveZMQ keys: every ZeroMQ endpoint then requires an authorised client key."""
        if secure is not None and tcp_gateway and not gateway_insecure_ok:
            raise UsageError(
                "the plain-TCP gateway cannot authenticate clients: it does not start on a "
                "secure server unless explicitly allowed (--gateway-allow-insecure)"
            )
        if secure is not None and zenoh is not None and not zenoh.tls and not zenoh_insecure_ok:
            raise UsageError(
                "a secure server would publish into Zenoh without encryption: give Zenoh TLS "
                "settings (--zenoh-tls, tls/ endpoints) or allow it (--zenoh-allow-insecure)"
            )
        self._guard: ZapGuard | None = None
        self._gateway_addr = _parse_hostport(tcp_gateway, self.address) if tcp_gateway else None
        self._gateway_options = dict(gateway_options or {})
        self.gateway: TcpGateway | None = None
        # a secure server's viewer stays on this machine unless told where (and needs a token)
        web_host = "127.0.0.1" if secure is not None else self.address
        self._web_addr = _parse_hostport(web, web_host) if web is not None else None
        self._web_token = secrets.token_urlsafe(16) if secure is not None else None
        self._web_fallback = web_fallback
        self.web: WebViewer | None = None
        self._web_jpeg: set[tuple[str, StreamKind]] = set()
        self._zenoh_options = zenoh
        self._zenoh_native = zenoh_native
        self._ros2_domain = ros2_domain
        self._ros2_compressed_depth = ros2_compressed_depth
        if ros2_domain is not None and zenoh is None:
            raise UsageError("ROS 2 mode publishes over Zenoh: give zenoh options too")
        self.zenoh: ZenohPublishing | None = None
        self.ros2: Ros2Publishing | None = None
        self._link: ZenohLink | None = None
        """Color streams whose JPEG the web viewer takes from the publisher."""
        if start_immediately:
            self.start()

    # -- lifecycle ------------------------------------------------------------------------------
    @property
    def is_running(self) -> bool:
        return self._control is not None

    def start(self) -> None:
        """Bind the endpoints, start the devices and announce. No effect if running."""
        with self._lock:
            if self.is_running:
                log.warning("server already running")
                return
            self._stopping.clear()
            self._ctx = self._given_ctx or zmq.Context()
            if self.secure is not None:
                self._guard = ZapGuard(self._ctx, self.secure)
            try:
                control = ControlEndpoint(
                    self._ctx, self.address, self.port, self._responder, self.secure
                )
            except zmq.ZMQError as exc:
                self._close_ctx()
                raise UsageError(
                    f"cannot listen on {self.address}:{self.port}: {exc.strerror}"
                    " (is another server running? choose another --port)"
                ) from exc
            self.port = control.port
            self._control = control
            self.endpoints = {EndpointType.control: make_endpoint(self._host, control.port)}
            if self._web_addr is not None:
                self._start_web(*self._web_addr)
            if self._zenoh_options is not None:
                try:
                    self._link = ZenohLink(self._zenoh_options)
                except UsageError:
                    self.stop()
                    raise
                if self._zenoh_native:
                    self.zenoh = ZenohPublishing(self._link, self.name)
                if self._ros2_domain is not None:
                    self.ros2 = Ros2Publishing(
                        self._link,
                        self._ros2_domain,
                        self.name,
                        compressed_depth=self._ros2_compressed_depth,
                    )
            for entry in self._entries.values():
                self._open_or_recover(entry)
            if self._gateway_addr is not None:
                self._start_gateway(*self._gateway_addr)
            control.start()
            if self.announce:
                self._announcer = Announcer(self.name, self._host, control.port, self.interfaces)
                self._announcer.start(self._txt())
            log.info("serving %r at %s", self.name, self.endpoints[EndpointType.control])

    def stop(self) -> None:
        """Stop serving, release the ports and stop the devices this server started."""
        with self._lock:
            if not self.is_running:
                log.warning("server not running")
                return
            control, self._control = self._control, None
            announcer, self._announcer = self._announcer, None
            self._stopping.set()
        assert control is not None
        control.stop()  # outside the lock: a who being answered needs it to finish
        gateway, self.gateway = self.gateway, None
        if gateway is not None:
            gateway.stop()
        web, self.web = self.web, None
        if web is not None:
            web.stop()
        zenoh, self.zenoh = self.zenoh, None
        ros2, self.ros2 = self.ros2, None
        link, self._link = self._link, None
        with self._lock:
            for entry in self._entries.values():
                self._close_entry(entry, zenoh, ros2)
            self._close_ctx()
        if zenoh is not None:
            zenoh.close()
        if ros2 is not None:
            ros2.close()
        if link is not None:
            link.close()
        if announcer is not None:
            announcer.stop()
        log.info("server %r stopped", self.name)

    def _start_gateway(self, host: str, port: int) -> None:
        gateway = TcpGateway(host, port, self._gateway_devices, **self._gateway_options)
        try:
            gateway.start()
        except OSError as exc:
            self.stop()
            raise UsageError(
                f"cannot listen on {host}:{port} for the TCP gateway: {exc.strerror}"
                " (choose another --tcp-gateway port)"
            ) from exc
        self.gateway = gateway
        log.info("TCP gateway on %s:%d", host, gateway.port)

    def _start_web(self, host: str, port: int) -> None:
        web = WebViewer(host, port, _ViewBackend(self), token=self._web_token)
        try:
            web.start()
        except OSError as exc:
            if not self._web_fallback:
                self.stop()
                raise UsageError(
                    f"cannot listen on {host}:{port} for the web viewer: {exc.strerror}"
                    " (choose another --web port, or --no-web)"
                ) from exc
            log.warning("web port %d is busy (%s); using a free port", port, exc.strerror)
            web = WebViewer(host, 0, _ViewBackend(self), token=self._web_token)
            web.start()
        self.web = web
        log.info("web viewer at %s", web.url)

    def _web_tap(self, frame: Frame, header: bytes, payload: Any) -> None:
        web = self.web
        if web is not None:
            web.submit(frame, jpeg=payload)

    def _web_watching(self) -> bool:
        web = self.web
        return web is not None and web.watching

    def _viewer_devices(self) -> list[dict[str, Any]]:
        with self._lock:
            entries = list(self._entries.values())
        out = []
        for e in entries:
            dev = e.device
            streams = {
                k.value: {
                    **info.to_dict(),
                    "codec": e.publishers[k].codec_name if k in e.publishers else None,
                }
                for k, info in dev.streams.items()
            }
            state = "unplugged" if e.failed else "live" if e.publishers else "starting"
            out.append({"id": dev.id, "name": dev.name, "state": state, "streams": streams})
        return out

    @property
    def gateway_endpoint(self) -> str | None:
        """``tcp://host:port`` of the plain-TCP gateway, when it runs."""
        if self.gateway is None:
            return None
        host = advertise_host(self.gateway.host)
        return make_endpoint(host, self.gateway.port)

    def _gateway_devices(self) -> dict[str, dict[StreamKind, Any]]:
        with self._lock:
            return {e.device.id: dict(e.device.streams) for e in self._entries.values()}

    def _close_ctx(self) -> None:
        guard, self._guard = self._guard, None
        if guard is not None:
            guard.stop()
        ctx, self._ctx = self._ctx, None
        if ctx is None or ctx is self._given_ctx:
            return
        # Every socket is closed by its owner thread by now; should one be stuck, do not hang.
        t = threading.Thread(target=ctx.term, name="rgbdcast-ctx-term", daemon=True)
        t.start()
        t.join(2.0)
        if t.is_alive():
            log.warning("a socket was not closed in time; ZeroMQ context left to the OS")

    def __enter__(self) -> Server:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.is_running:
            self.stop()

    # -- devices ------------------------------------------------------------------------------
    @property
    def devices(self) -> list[Device]:
        """The devices this server serves."""
        with self._lock:
            return [e.device for e in self._entries.values()]

    def add_device(self, device: Device | Any) -> Device:
        """Serve *device* (a :class:`Device`, or a streamkinect2-style kinect object)."""
        if not isinstance(device, Device):
            if hasattr(device, "unique_kinect_id") and hasattr(device, "on_depth_frame"):
                device = LegacyKinect(device)
            else:
                raise UsageError(f"{device!r} is not a Device")
        with self._lock:
            if device.id in self._entries:
                raise UsageError(f"a device with id {device.id!r} is already served")
            entry = _Entry(device)
            self._entries[device.id] = entry
            if self.is_running:
                self._open_or_recover(entry)
        self._update_announcement()
        return device

    def remove_device(self, device: Device | str | Any) -> None:
        """Stop serving a device (given as the device, its id, or the kinect object added)."""
        key = device if isinstance(device, str) else getattr(device, "id", None)
        if key is None:
            key = getattr(device, "unique_kinect_id", None)
        with self._lock:
            entry = self._entries.pop(str(key), None)
            if entry is None:
                raise UsageError(f"device {key!r} is not served here")
            if self.is_running:
                self._close_entry(entry)
        if self.web is not None:
            self.web.forget(entry.device.id)
        self._update_announcement()

    # streamkinect2 names
    add_kinect = add_device
    remove_kinect = remove_device

    @property
    def kinects(self) -> list[Any]:
        """streamkinect2 name: the devices (the original kinect objects for wrapped ones)."""
        return [d.kinect if isinstance(d, LegacyKinect) else d for d in self.devices]

    def _open_entry(self, entry: _Entry) -> None:
        assert self._ctx is not None
        dev = entry.device
        pubs: dict[StreamKind, StreamPublisher] = {}
        try:
            for kind in dev.streams:
                pubs[kind] = StreamPublisher(
                    self._ctx,
                    dev.id,
                    kind,
                    self.address,
                    codec=self._codecs.get(kind),
                    codec_params=self._params.get(kind),
                    secure=self.secure,
                    checksums=self.checksums,
                )
        except Exception:
            for pub in pubs.values():
                pub.stop()
            raise
        zenoh = self.zenoh
        if zenoh is not None:
            senders = zenoh.add_device(
                dev.id, [k.value for k in pubs], lambda: self._device_record(dev.id)
            )
            for kind, pub in pubs.items():
                sender = senders[kind.value]
                pub.add_tap(partial(sender.submit, codec=pub.codec_name), sender.matched)
        ros = self.ros2
        if ros is not None:
            ros_senders = ros.add_device(dev.id, list(pubs))
            for kind, pub in pubs.items():
                pub.add_tap(ros_senders[kind].submit, ros_senders[kind].matched)
        for kind, pub in pubs.items():
            if kind is StreamKind.color and pub.codec_name == "jpeg":
                pub.add_tap(self._web_tap, self._web_watching)
                self._web_jpeg.add((dev.id, kind))
            pub.start()
        entry.publishers = pubs
        self._routes = {**self._routes, dev.id: pubs}
        Device.on_frame.connect(self._on_frame, sender=dev, weak=False)
        Device.on_error.connect(self._on_error, sender=dev, weak=False)
        if not dev.is_running:
            try:
                dev.start()
            except Exception:
                self._close_entry(entry)
                raise
            entry.started_here = True

    def _close_entry(
        self,
        entry: _Entry,
        zenoh: ZenohPublishing | None = None,
        ros: Ros2Publishing | None = None,
    ) -> None:
        dev = entry.device
        for side in (zenoh or self.zenoh, ros or self.ros2):
            if side is not None:
                side.remove_device(dev.id)
        Device.on_frame.disconnect(self._on_frame, sender=dev)
        Device.on_error.disconnect(self._on_error, sender=dev)
        self._routes = {k: v for k, v in self._routes.items() if k != dev.id}
        self._web_jpeg = {key for key in self._web_jpeg if key[0] != dev.id}
        if entry.started_here:
            dev.stop()
            entry.started_here = False
        for pub in entry.publishers.values():
            pub.stop()
        entry.publishers = {}

    def _on_frame(self, device: Device, frame: Frame | None = None, **_: Any) -> None:
        pubs = self._routes.get(device.id)
        if pubs is not None and frame is not None:
            pub = pubs.get(frame.kind)
            if pub is not None:
                pub.submit(frame)
            web = self.web
            if web is not None and (device.id, frame.kind) not in self._web_jpeg:
                web.submit(frame)
            gateway = self.gateway
            if gateway is not None:
                gateway.submit(frame)

    def _open_or_recover(self, entry: _Entry) -> None:
        """Open a device's endpoints and start it; if it will not start, keep retrying."""
        try:
            self._open_entry(entry)
        except DeviceError as exc:
            log.warning(
                "device %s is not available (%s); retrying in the background", entry.device.id, exc
            )
            entry.failed = True
            self._start_recovery(entry)

    def _on_error(self, device: Device, error: BaseException | None = None, **_: Any) -> None:
        """A device failed mid-stream (on its own thread): drop it from who/me and retry."""
        with self._lock:
            entry = self._entries.get(device.id)
            if entry is None or entry.failed or not self.is_running:
                return
            entry.failed = True
        log.error("device %s failed (%s); removed from who/me, retrying", device.id, error)
        self._start_recovery(entry, close=True)

    def _start_recovery(self, entry: _Entry, close: bool = False) -> None:
        threading.Thread(
            target=self._recover,
            args=(entry, close),
            daemon=True,
            name=f"rgbdcast-recover-{entry.device.id}",
        ).start()

    def _recover(self, entry: _Entry, close: bool) -> None:
        dev = entry.device
        if close:
            with self._lock:
                if self._entries.get(dev.id) is entry and self.is_running:
                    self._close_entry(entry)
            self._update_announcement()
        delay = RETRY_FIRST_S
        while not self._stopping.wait(delay):
            with self._lock:
                if self._entries.get(dev.id) is not entry or not self.is_running:
                    return
                try:
                    self._open_entry(entry)
                except Exception as exc:
                    log.debug("device %s still unavailable: %s", dev.id, exc)
                    delay = min(delay * 2, RETRY_MAX_S)
                    continue
                entry.failed = False
            log.warning("device %s is back", dev.id)
            self._update_announcement()
            return

    # -- what clients see ---------------------------------------------------------------------
    def _device_record(self, device_id: str) -> dict[str, Any]:
        """The device as who/me describes it (what Zenoh's ``@meta/info`` answers)."""
        for dev in self._me_payload()["devices"]:
            if dev["id"] == device_id:
                return dict(dev)
        return {"id": device_id, "streams": {}}

    def _me_payload(self) -> dict[str, Any]:
        devices = []
        with self._lock:
            entries = list(self._entries.values())
        for entry in entries:
            if entry.failed:
                continue  # unplugged: clients see it go, and come back under the same id
            dev = entry.device
            streams = {}
            endpoints = {}
            for kind, info in dev.streams.items():
                pub = entry.publishers.get(kind)
                if pub is None:
                    continue
                endpoints[kind.value] = make_endpoint(self._host, pub.port)
                streams[kind.value] = {**info.to_dict(), "codec": pub.codec_name}
            devices.append(
                {"id": dev.id, "endpoints": endpoints, "streams": streams, **dev.describe()}
            )
        return {
            "version": PROTOCOL_VERSION,
            "name": self.name,
            "endpoints": {t.name: ep for t, ep in self.endpoints.items()}
            | ({"tcp_gateway": self.gateway_endpoint} if self.gateway_endpoint else {})
            | ({"web": self.web.url} if self.web is not None else {}),
            "devices": devices,
            "server": {"software": "rgbdcast", "version": __version__},
        }

    def stats(self) -> dict[str, Any]:
        """Counters: per device stream, the control endpoint, and this process."""
        with self._lock:
            entries = list(self._entries.values())
        proc = psutil.Process(os.getpid())
        return {
            "streams": {
                f"{e.device.id}/{k.value}": p.stats.to_dict()
                for e in entries
                for k, p in e.publishers.items()
            },
            "control": {
                "requests": self._responder.counters.requests,
                "errors": dict(self._responder.counters.errors),
            },
            "process": {"rss_bytes": proc.memory_info().rss, "threads": proc.num_threads()},
            "security": (
                {
                    "accepted": self._guard.folder.accepted,
                    "rejected": self._guard.folder.rejected,
                }
                if self._guard is not None
                else None
            ),
            "gateway": self.gateway.stats.to_dict() if self.gateway is not None else None,
            "web": self.web.stats.to_dict() if self.web is not None else None,
            "zenoh": self.zenoh.stats() if self.zenoh is not None else None,
        }

    def _txt(self) -> dict[str, str]:
        streams = ";".join(f"{d.id}={','.join(k.value for k in d.streams)}" for d in self.devices)
        security = (
            {"security": "curve", "fingerprint": self.secure.fingerprint} if self.secure else {}
        )
        return {
            **security,
            "proto": str(PROTOCOL_VERSION),
            "name": self.name[:200],
            "devices": str(len(self.devices)),
            "streams": streams[:250],
        }

    def _update_announcement(self) -> None:
        if self._announcer is not None:
            self._announcer.update(self._txt())


class _ViewBackend:
    """What the web viewer shows of this server."""

    mode = "server"

    def __init__(self, server: Server) -> None:
        self._server = server
        self.name = server.name

    def devices(self) -> list[dict[str, Any]]:
        return self._server._viewer_devices()

    def stats(self) -> dict[str, dict[str, Any]]:
        with self._server._lock:
            entries = list(self._server._entries.values())
        out = {}
        for e in entries:
            for k, p in e.publishers.items():
                st = p.stats
                out[f"{e.device.id}/{k.value}"] = {"dropped": st.dropped_busy, "sent": st.sent}
        return out

    def sources(self) -> list[dict[str, Any]]:
        return []

    def select(self, source: str, on: bool) -> None:
        """A server shows only itself."""


def _parse_hostport(value: str | int, default_host: str) -> tuple[str, int]:
    """``PORT`` or ``HOST:PORT`` for the gateway; UsageError if malformed."""
    text = str(value)
    host, _, port = text.rpartition(":")
    try:
        number = int(port)
    except ValueError:
        raise UsageError(f"bad address {text!r}: expected [HOST:]PORT") from None
    if not 0 <= number < 65536:
        raise UsageError(f"port must be in 0..65535, got {number}")
    return host or default_host, number


def _hostname() -> str:
    import socket

    return socket.gethostname().split(".")[0] or "localhost"
