"""The ``Device`` interface every adapter implements, and a threaded base for capture loops.

How this works: a device owns one capture thread. ``start()`` opens the hardware and starts the
thread; the thread calls ``_capture()`` in a loop and emits each returned frame on the
``on_frame`` signal (``sender=device, frame=Frame``). Receivers run on the capture thread and
must be quick: the server's receiver only drops the frame into a latest-frame slot. When
``_capture()`` raises, the error is logged once and ``on_error`` fires; the thread ends.
"""

from __future__ import annotations

import logging
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from blinker import Signal

from .._osthreads import name_native_thread, precise_timers
from ..errors import DeviceError
from ..frames import Encoded, Frame, Intrinsics, StreamKind
from ..geometry.calibration import Calibration

__all__ = ["Device", "StreamInfo", "ThreadedDevice", "name_native_thread", "precise_timers"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamInfo:
    """What one stream of a device delivers."""

    kind: StreamKind
    width: int = 0
    height: int = 0
    fps: float = 30.0
    dtype: str = ""
    units: str = ""
    intrinsics: Intrinsics | None = None
    notes: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "width": self.width,
            "height": self.height,
            "fps": self.fps,
            "dtype": self.dtype,
            "units": self.units,
        }
        if self.intrinsics is not None:
            d["intrinsics"] = self.intrinsics.to_dict()
        d.update(self.notes)
        return d


class Device(ABC):
    """A source of frames. Subclasses set ``id``, ``name`` and ``streams``."""

    on_frame = Signal()
    """Emitted on the device thread for every frame: ``handler(device, frame=Frame)``."""

    on_error = Signal()
    """Emitted once when the device fails: ``handler(device, error=Exception)``."""

    on_calibration = Signal()
    """Emitted when :meth:`calibration` has changed: ``handler(device)``."""

    id: str
    name: str
    kind: str = "device"

    @property
    @abstractmethod
    def streams(self) -> dict[StreamKind, StreamInfo]:
        """The streams this device delivers."""

    @property
    @abstractmethod
    def is_running(self) -> bool: ...

    @abstractmethod
    def start(self) -> None:
        """Open the device and start delivering frames (no effect if running)."""

    @abstractmethod
    def stop(self) -> None:
        """Stop delivering frames and release the device (no effect if stopped)."""

    def describe(self) -> dict[str, Any]:
        """Extra who/me fields for this device (kind, name, capabilities)."""
        return {"name": self.name, "kind": self.kind}

    def calibration(self) -> Calibration | None:
        """What makes this device's pixels 3-D (None: nothing is known, nothing is claimed).
        May change while running (a fit finishing, a file reloaded); clients see the new one."""
        return None

    def calibration_table(self, name: str) -> Any:
        """A per-pixel table named in ``calibration().tables`` as a numpy array, or None."""
        return None

    def __enter__(self) -> Device:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class ThreadedDevice(Device):
    """A device whose frames come from a capture loop on its own thread."""

    def __init__(self) -> None:
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.error: BaseException | None = None

    @property
    def is_running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        with self._lock:
            if self.is_running:
                log.debug("%s already running", self.id)
                return
            self._stop.clear()
            self.error = None
            self._open()
            self._thread = threading.Thread(
                target=self._run, name=f"rgbdcast-device-{self.id}", daemon=True
            )
            self._thread.start()

    def stop(self) -> None:
        with self._lock:
            thread, self._thread = self._thread, None
            self._stop.set()
            if thread is not None and thread is not threading.current_thread():
                thread.join(2.0)
                if thread.is_alive():
                    log.warning("device %s did not stop within 2 s", self.id)

    def _run(self) -> None:
        name_native_thread(f"src-{self.id}")
        precise_timers()
        try:
            while not self._stop.is_set():
                frames = self._capture(self._stop)
                for frame in frames:
                    self.emit(frame)
        except Exception as exc:
            self.error = exc
            log.error("device %s failed: %s", self.id, exc)
            self.on_error.send(self, error=exc)
        finally:
            try:
                self._close()
            except Exception as exc:  # closing a broken device may fail again
                log.debug("closing %s: %s", self.id, exc)

    def emit(self, frame: Frame) -> None:
        """Send *frame* to every receiver of ``on_frame`` for this device."""
        self.on_frame.send(self, frame=frame)

    def _open(self) -> None:
        """Open the hardware (on the caller's thread); raise :class:`DeviceError` if it cannot."""

    def _close(self) -> None:
        """Release the hardware (on the capture thread)."""

    @abstractmethod
    def _capture(self, stop: threading.Event) -> list[Frame]:
        """Wait for and return the next frames (one frameset); return [] when *stop* is set."""


def make_frameset(
    device_id: str,
    seq: int,
    data: dict[StreamKind, Any],
    intrinsics: Mapping[StreamKind, Intrinsics | None],
    device_time_ns: int,
    host_time_ns: int | None = None,
) -> list[Frame]:
    """The frames of one capture: one sequence number, frameset id and host time for all. A value
    that is an :class:`~rgbdcast.frames.Encoded` is the image in its source's own encoding or
    layout (decoded only if read)."""
    now = time.time_ns() if host_time_ns is None else host_time_ns
    return [
        Frame(
            device_id=device_id,
            kind=kind,
            seq=seq,
            data=None if isinstance(value, Encoded) else value,  # type: ignore[arg-type]
            encoded=value if isinstance(value, Encoded) else None,
            device_time_ns=device_time_ns,
            host_time_ns=now,
            frameset_id=seq,
            intrinsics=intrinsics.get(kind),
        )
        for kind, value in data.items()
    ]


def wait_until(deadline_ns: int, stop: threading.Event) -> bool:
    """Sleep until *deadline_ns* (``time.monotonic_ns``); False if *stop* was set meanwhile."""
    delay = (deadline_ns - time.monotonic_ns()) / 1e9
    if delay > 0:
        return not stop.wait(delay)
    return not stop.is_set()


def require(module: str, extra: str, hint: str | None = None) -> Any:
    """Import *module* or raise a one-line error naming ``pip install rgbdcast[extra]`` (or
    *hint*, the manual step, where no extra can install it)."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        from ..errors import MissingDependencyError

        fix = hint or f"run  pip install 'rgbdcast[{extra}]'"
        raise MissingDependencyError(f"{module} is not available ({exc}): {fix}") from exc


__all__ += ["DeviceError", "make_frameset", "require", "wait_until"]
