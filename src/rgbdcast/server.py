"""The server: devices in; one control endpoint, one data endpoint per device stream, and any
outlets out.

How this works: ``start()`` binds the control REP socket, starts the outlets, then opens every
device (:mod:`rgbdcast._registry`): for each stream a
:class:`~rgbdcast.net.publisher.StreamPublisher` (its own XPUB socket and thread) wrapped in the
:class:`~rgbdcast.outlets.base.StreamPort` the outlets tap. Devices emit frames on their capture
threads; each goes to its stream's port, whose publisher encodes it once and sends it to every
subscriber. who/me is built on the control thread from the current devices
(:mod:`rgbdcast._whome`), so devices added or removed while running show up on a client's next
who. The server knows no outlet by name: every way out besides ZeroMQ (the web viewer, the
plain-TCP gateway, Zenoh, ROS 2, your own) is an :class:`~rgbdcast.outlets.base.Outlet`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

import zmq

from . import _whome
from ._registry import RETRY_FIRST_S, RETRY_MAX_S, DeviceRegistry
from .devices.base import Device
from .devices.legacy import LegacyKinect
from .errors import UsageError
from .frames import StreamKind
from .net.addresses import advertise_host, default_bind, make_endpoint
from .net.control import ControlEndpoint
from .net.discovery import Announcer
from .net.publisher import StreamPublisher
from .net.security import ServerKeys, ZapGuard
from .outlets.base import DeviceState, Outlet, OutletSet
from .protocol.control import ControlResponder, EndpointType

__all__ = ["RETRY_FIRST_S", "RETRY_MAX_S", "Server"]

log = logging.getLogger(__name__)

OutletT = TypeVar("OutletT", bound=Outlet)


class Server:
    """A server streaming the frames of its devices to interested clients.

    Use it as a context manager, or call :meth:`start` and :meth:`stop`::

        with Server(address="127.0.0.1", port=5606, outlets=[WebOutlet(0)]) as server:
            server.add_device(MockDevice())
            ...

    *address* is the bind address (default ``$RGBDCAST_BIND`` or all interfaces); advertised
    endpoints use a connectable address, never ``0.0.0.0``. *port* is the control port (0 picks
    a free one). *name* is shown to clients; *announce* registers the server on Zeroconf on the
    *interfaces* given (default ``$RGBDCAST_INTERFACES`` or all). *codecs* maps a stream kind to
    its codec name, *codec_params* to that codec's parameters. *secure* (CurveZMQ keys) makes
    every ZeroMQ endpoint require an authorised client key; *checksums* (a test mode) puts the
    CRC-32 of each payload in its frame header. *outlets* are the ways out besides ZeroMQ
    (:mod:`rgbdcast.outlets`). *zmq_ctx* and *io_loop* are accepted for streamkinect2
    compatibility (*io_loop* is unused: the server runs its own threads).
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
        secure: ServerKeys | None = None,
        checksums: bool = False,
        outlets: Iterable[Outlet] = (),
        clock: Callable[[], int] = time.time_ns,
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
        self.secure = secure
        """CurveZMQ keys: every ZeroMQ endpoint then requires an authorised client key."""
        self.checksums = checksums
        """Test mode: every frame header carries the CRC-32 of its payload."""
        self.clock = clock
        """The server's clock (ns since the epoch): what ``time`` requests answer, and what
        frame times are given in. A diagnostic skew goes here (``serve --clock-offset-ms``)."""
        self._given_ctx = zmq_ctx
        self._ctx: zmq.Context[Any] | None = None
        self._lock = threading.RLock()
        self._control: ControlEndpoint | None = None
        self._responder = ControlResponder(
            me=self._me_payload,
            stats=self.stats,
            calibration=lambda dev, tables: _whome.calibration_answer(
                self._registry.open_streams(), dev, tables
            ),
            clock=lambda: self.clock(),
            keyframe=lambda dev, stream: _whome.keyframe_answer(
                self._registry.open_streams(), dev, stream
            ),
        )
        self._announcer: Announcer | None = None
        self._guard: ZapGuard | None = None
        self._host = advertise_host(self.address)
        self.endpoints: dict[EndpointType, str] = {}
        self._outlets = OutletSet(outlets, self)  # each outlet may refuse this configuration
        self._registry = DeviceRegistry(
            self._lock, self._open_streams, self._outlets, self._update_announcement
        )
        if start_immediately:
            self.start()

    # -- lifecycle ------------------------------------------------------------------------------
    @property
    def is_running(self) -> bool:
        return self._control is not None

    def start(self) -> None:
        """Bind the endpoints, start the outlets and the devices, and announce. No effect if
        running."""
        with self._lock:
            if self.is_running:
                log.warning("server already running")
                return
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
            try:
                self._outlets.start()
            except BaseException:
                self.stop()
                raise
            self._registry.open_all()
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
            self._registry.halt()
        assert control is not None
        control.stop()  # outside the lock: a who being answered needs it to finish
        with self._lock:
            self._registry.close_all()
            self._close_ctx()
        self._outlets.stop()
        if announcer is not None:
            announcer.stop()
        log.info("server %r stopped", self.name)

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

    # -- outlets --------------------------------------------------------------------------------
    @property
    def outlets(self) -> list[Outlet]:
        """The outlets this server was given, in order."""
        return list(self._outlets)

    def outlet(self, kind: type[OutletT]) -> OutletT | None:
        """The outlet of class *kind* (``server.outlet(WebOutlet)``), or None."""
        return self._outlets.find(kind)

    # -- devices ------------------------------------------------------------------------------
    @property
    def devices(self) -> list[Device]:
        """The devices this server serves."""
        return self._registry.devices

    def add_device(self, device: Device | Any) -> Device:
        """Serve *device* (a :class:`Device`, or a streamkinect2-style kinect object)."""
        if not isinstance(device, Device):
            if hasattr(device, "unique_kinect_id") and hasattr(device, "on_depth_frame"):
                device = LegacyKinect(device)
            else:
                raise UsageError(f"{device!r} is not a Device")
        self._registry.add(device)
        return device

    def remove_device(self, device: Device | str | Any) -> None:
        """Stop serving a device (given as the device, its id, or the kinect object added)."""
        key = device if isinstance(device, str) else getattr(device, "id", None)
        if key is None:
            key = getattr(device, "unique_kinect_id", None)
        self._registry.remove(str(key))

    # streamkinect2 names
    add_kinect = add_device
    remove_kinect = remove_device

    @property
    def kinects(self) -> list[Any]:
        """streamkinect2 name: the devices (the original kinect objects for wrapped ones)."""
        return [d.kinect if isinstance(d, LegacyKinect) else d for d in self.devices]

    def _open_streams(self, dev: Device) -> dict[StreamKind, StreamPublisher]:
        """A publisher per stream of *dev*, bound but not started (all or none)."""
        assert self._ctx is not None
        pubs: dict[StreamKind, StreamPublisher] = {}
        try:
            for kind in dev.streams:
                pubs[kind] = StreamPublisher(
                    self._ctx,
                    dev.id,
                    kind,
                    self.address,
                    codec=self._codecs.get(kind) or dev.streams[kind].notes.get("recorded_codec"),
                    codec_params=self._params.get(kind),
                    secure=self.secure,
                    checksums=self.checksums,
                    clock=None if self.clock is time.time_ns else self.clock,
                )
        except Exception:
            for pub in pubs.values():
                pub.stop()
            raise
        return pubs

    # -- what clients and outlets see (OutletHost) ----------------------------------------------
    def device_states(self) -> list[DeviceState]:
        """Every device served, with its state (``live``, ``starting``, ``unplugged``)."""
        return self._registry.states()

    def device_record(self, device_id: str) -> dict[str, Any]:
        """The device as who/me describes it (what Zenoh's ``@meta/info`` answers)."""
        for dev, pubs in self._registry.open_streams():
            if dev.id == device_id:
                return _whome.device_record(dev, pubs, self._host)
        return {"id": device_id, "streams": {}}

    def stream_stats(self) -> dict[str, dict[str, Any]]:
        """The publisher counters of each open stream, keyed ``<device>/<stream>``."""
        return _whome.stream_stats(self._registry.open_streams())

    def _me_payload(self) -> dict[str, Any]:
        endpoints = {t.name: ep for t, ep in self.endpoints.items()} | self._outlets.endpoints()
        return _whome.me_payload(self.name, endpoints, self._registry.open_streams(), self._host)

    def stats(self) -> dict[str, Any]:
        """Counters: per device stream, the control endpoint, this process, each outlet."""
        guard = self._guard
        return _whome.stats_payload(
            self._registry.open_streams(),
            {
                "requests": self._responder.counters.requests,
                "errors": dict(self._responder.counters.errors),
            },
            (
                {"accepted": guard.folder.accepted, "rejected": guard.folder.rejected}
                if guard is not None
                else None
            ),
            self._outlets.stats(),
        )

    def _txt(self) -> dict[str, str]:
        return _whome.txt_record(self.name, self.devices, self.secure)

    def _update_announcement(self) -> None:
        if self._announcer is not None:
            self._announcer.update(self._txt())


def _hostname() -> str:
    import socket

    return socket.gethostname().split(".")[0] or "localhost"
