"""The one interface between a server and every way out of it besides its ZeroMQ publishers.

How this works: a :class:`~rgbdcast.server.Server` is given its outlets when it is made and calls
each one's :meth:`Outlet.attach` at once, with itself as the :class:`OutletHost`, so that an
outlet can refuse a configuration before anything runs (a secure server and an outlet that
cannot authenticate its clients). :meth:`Outlet.start` runs when the server starts, before any
device opens. Whenever a device's streams open (at start, when the device is added, when it
comes back after failing) every outlet gets :meth:`Outlet.device_added` with a
:class:`DevicePort`, and :meth:`Outlet.device_removed` when they close again.
:meth:`Outlet.stop` runs after every device has closed.

A :class:`StreamPort` offers a stream's frames in two forms, both on the producer's thread, so a
tap only hands a frame on and never waits:

* :meth:`StreamPort.tap_frames`: each frame as the device delivers it, before encoding;
* :meth:`StreamPort.tap_encoded`: each frame as it goes to the ZeroMQ subscribers, with its
  header and encoded payload. The stream is encoded while a ZeroMQ client subscribes *or* some
  tap's ``wanted()`` says it is consumed, and not at all otherwise.

:class:`OutletSet` is what the server uses to drive its outlets together.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from ..devices.base import StreamInfo
from ..errors import UsageError
from ..frames import Frame, Intrinsics, StreamKind
from ..geometry.calibration import Calibration

if TYPE_CHECKING:
    from ..net.security import ServerKeys

__all__ = [
    "DevicePort",
    "DeviceState",
    "EncodedTap",
    "FrameTap",
    "Outlet",
    "OutletHost",
    "OutletSet",
    "StreamPort",
    "stream_intrinsics",
    "tap_device",
]

log = logging.getLogger(__name__)

FrameTap = Callable[[Frame], None]
"""``tap(frame)``: a frame as its device delivered it."""
EncodedTap = Callable[[Frame | None, bytes, Any], None]
"""``tap(frame, header, payload)``: a frame as sent, the header being the frame envelope's
bytes (:mod:`rgbdcast.protocol.envelope`). *frame* is None where the frame was never decoded
(forwarded as received from another server)."""


class StreamPort:
    """One stream of one device, as outlets plug into it."""

    __slots__ = (
        "_add_encoded",
        "_failed",
        "_sink",
        "codec",
        "device_id",
        "frame_taps",
        "info",
        "kind",
        "request_keyframe",
    )

    def __init__(
        self,
        device_id: str,
        kind: StreamKind,
        info: StreamInfo,
        codec: str,
        sink: FrameTap,
        add_encoded_tap: Callable[[EncodedTap, Callable[[], bool]], None],
        tap_failed: Callable[[object], None],
        request_keyframe: Callable[[], bool] = lambda: False,
    ) -> None:
        self.device_id = device_id
        self.request_keyframe = request_keyframe
        """Ask a video stream for a keyframe soon (False if the stream is not video)."""
        self.kind = kind
        self.info = info
        self.codec = codec
        """The codec the stream is sent in (``jpeg``, ``grad-zstd``, ...)."""
        self.frame_taps: tuple[FrameTap, ...] = ()
        self._sink = sink
        self._add_encoded = add_encoded_tap
        self._failed = tap_failed

    def tap_frames(self, tap: FrameTap) -> None:
        """Also hand every frame the device delivers to *tap*, on the device's thread."""
        self.frame_taps = (*self.frame_taps, tap)

    def tap_encoded(self, tap: EncodedTap, wanted: Callable[[], bool]) -> None:
        """Also hand every frame sent to *tap*, on the stream's publisher thread, and have the
        stream encoded while *wanted()* is true even if no ZeroMQ client subscribes."""
        self._add_encoded(tap, wanted)

    def submit(self, frame: Frame) -> None:
        """The producer's side: a new frame for the stream's publisher and every frame tap."""
        self._sink(frame)
        for tap in self.frame_taps:
            try:
                tap(frame)
            except Exception:  # an outlet's bug must not stop the device for everyone else
                self._failed(tap)


def _none(*_: Any) -> Any:
    return None


def tap_device(
    device: DevicePort,
    streams: Mapping[StreamKind, tuple[EncodedTap, Callable[[], bool]]],
    geometry: tuple[EncodedTap, Callable[[], bool]] | None = None,
) -> None:
    """Tap each of *device*'s streams with its ``(tap, wanted)`` pair, and its depth and color
    both with *geometry*'s (what turns their framesets into clouds and transforms), if any."""
    for kind, (tap, wanted) in streams.items():
        device.streams[kind].tap_encoded(tap, wanted)
    if geometry is not None:
        for kind in (StreamKind.depth, StreamKind.color):
            device.streams[kind].tap_encoded(*geometry)


def stream_intrinsics(
    calibration: Callable[[], Calibration | None],
    kind: StreamKind,
    intr: Intrinsics | None,
    width: int,
    height: int,
) -> Intrinsics | None:
    """What to publish as the camera of a *kind* frame of *width* x *height*: the device's
    calibration of that camera (with its distortion) where it has one at that size, else
    *intr*, the frame's own. A calibration that cannot be had now (a bridge's client
    reconnecting) counts as none."""
    try:
        cal = calibration()
    except Exception:
        cal = None
    known = cal.intrinsics_of(kind) if cal is not None else None
    if known is not None and (known.width, known.height) == (width, height):
        return known
    return intr


@dataclass(frozen=True)
class DevicePort:
    """A device whose streams just opened: its id and name, a port per stream, and its
    geometry: ``calibration()`` (now; None if it has none or it was refused) and
    ``calibration_table(name)`` (a per-pixel table it names, as a numpy array, or None)."""

    id: str
    name: str
    streams: Mapping[StreamKind, StreamPort]
    calibration: Callable[[], Calibration | None] = _none
    calibration_table: Callable[[str], Any] = _none

    @property
    def codecs(self) -> dict[StreamKind, str]:
        """The codec each stream is sent in."""
        return {kind: port.codec for kind, port in self.streams.items()}

    def request_keyframe(self, kind: StreamKind) -> bool:
        """Ask the *kind* stream for a keyframe soon (False if it is not video)."""
        return self.streams[kind].request_keyframe()


@dataclass(frozen=True)
class DeviceState:
    """A device as the host knows it now. *state* is ``live`` (streams open), ``starting`` or
    ``unplugged`` (failed; being retried). *codecs* names the codec of each open stream."""

    id: str
    name: str
    state: str
    streams: Mapping[StreamKind, StreamInfo]
    codecs: Mapping[StreamKind, str]


class OutletHost(Protocol):
    """What an outlet sees of the server it plugs into."""

    name: str
    """The server's name, as clients see it."""
    address: str
    """The server's bind address."""
    secure: ServerKeys | None
    """The server's CurveZMQ keys when it requires authenticated clients, else None."""

    def device_states(self) -> list[DeviceState]:
        """Every device served, in the order added, whatever its state."""

    def device_record(self, device_id: str) -> dict[str, Any]:
        """The device as who/me describes it to clients."""

    def stream_stats(self) -> dict[str, dict[str, Any]]:
        """The publisher counters of each open stream, keyed ``<device>/<stream>``."""


class Outlet(Protocol):
    """A way out of a running server. Subclass it to inherit do-nothing defaults, or implement
    every member. Every method is called by the server; none may block for long."""

    name: str
    """A short unique name: the outlet's key in the server's stats."""

    def attach(self, host: OutletHost) -> None:
        """The server this outlet belongs to, once, when the server is made. Raise
        :class:`~rgbdcast.errors.UsageError` to refuse its configuration."""

    def start(self) -> None:
        """Start serving (the server is starting). Raise ``UsageError`` if it cannot; the
        server then stops again and raises it to its caller."""

    def stop(self) -> None:
        """Stop serving and release everything (the server is stopping)."""

    def device_added(self, device: DevicePort) -> None:
        """A device's streams opened: tap those the outlet carries."""

    def device_removed(self, device_id: str) -> None:
        """A device's streams closed (removed, failed, or the server stops); its taps are gone
        with its ports."""

    def endpoints(self) -> dict[str, str]:
        """Endpoints to add to who/me (``{"web": "http://..."}``), while running."""
        return {}

    def stats(self) -> dict[str, Any] | None:
        """Counters for the server's stats, under :attr:`name`."""
        return None


OutletT = TypeVar("OutletT", bound=Outlet)
R = TypeVar("R")


class OutletSet:
    """A server's outlets, driven together: attached when made, started in order (and stopped
    again if one fails to start), told about devices while started, stopped in reverse order."""

    def __init__(self, outlets: Iterable[Outlet], host: OutletHost) -> None:
        self._outlets = tuple(outlets)
        names = [o.name for o in self._outlets]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise UsageError(f"outlets need unique names; given twice: {', '.join(twice)}")
        for outlet in self._outlets:
            outlet.attach(host)
        self._started: tuple[Outlet, ...] = ()
        self.errors: Counter[str] = Counter()
        """How often each outlet raised in a call that must not fail (by outlet name)."""
        self._logged: set[tuple[str, str]] = set()

    def __iter__(self) -> Iterator[Outlet]:
        return iter(self._outlets)

    def find(self, kind: type[OutletT]) -> OutletT | None:
        """The first outlet of class *kind*, or None."""
        return next((o for o in self._outlets if isinstance(o, kind)), None)

    def start(self) -> None:
        for outlet in self._outlets:
            try:
                outlet.start()
            except BaseException:
                self.stop()
                raise
            self._started = (*self._started, outlet)

    def stop(self) -> None:
        started, self._started = self._started, ()
        for outlet in reversed(started):
            try:
                outlet.stop()
            except Exception:  # one outlet failing to stop must not keep the others running
                log.exception("stopping the %s outlet failed", outlet.name)

    def device_added(self, device: DevicePort) -> None:
        for outlet in self._started:
            self._call(outlet, f"taking device {device.id}", outlet.device_added, device)

    def device_removed(self, device_id: str) -> None:
        for outlet in self._started:
            self._call(outlet, f"letting device {device_id} go", outlet.device_removed, device_id)

    def endpoints(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for outlet in self._started:
            out.update(self._call(outlet, "naming its endpoints", outlet.endpoints) or {})
        return out

    def stats(self) -> dict[str, Any]:
        """Each started outlet's counters under its name, and ``outlet_errors``: how often each
        outlet raised where it must not (it is then skipped for that call; the server and the
        other outlets go on)."""
        out: dict[str, Any] = {}
        for outlet in self._started:
            out[outlet.name] = self._call(outlet, "reporting its stats", outlet.stats)
        return {**out, "outlet_errors": dict(self.errors)}

    def _call(self, outlet: Outlet, doing: str, method: Callable[..., R], *args: Any) -> R | None:
        """*method(*args)*, or None if it raised: an outlet's bug is counted and logged (once per
        outlet and kind of call), never passed on to the device or client that caused the call."""
        try:
            return method(*args)
        except Exception:
            self.errors[outlet.name] += 1
            if (outlet.name, doing.split()[0]) not in self._logged:
                self._logged.add((outlet.name, doing.split()[0]))
                log.exception(
                    "the %s outlet failed %s (counted in outlet_errors)", outlet.name, doing
                )
            return None
