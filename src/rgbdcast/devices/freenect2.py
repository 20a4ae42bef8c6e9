"""Kinect v2 on Linux and macOS through libfreenect2 (pylibfreenect2): color, depth, infrared.

libfreenect2 has no body tracking: this adapter has no body stream and says so in who/me
(``body_tracking: false``). How this works: a ``SyncMultiFrameListener`` receives color, depth
and infrared together; each ``waitForNewFrame`` gives one frameset, released after copying:
color BGRX 1920x1080 (served as BGRA), depth float32 millimetres (served as uint16 mm), infrared
float32 0..65535 (served as uint16). Depth intrinsics come from ``getIrCameraParams``; the
calibration adds a color camera fitted to libfreenect2's registration of the factory
``getColorCameraParams`` (:mod:`.freenect2reg`, its error in ``fit``).

Install: build libfreenect2 (github.com/OpenKinect/libfreenect2, its README), point
``LIBFREENECT2_INSTALL_PREFIX`` at it, then ``pip install pylibfreenect2``. Unverified on real
hardware here: tested against an SDK-shaped fake.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from ..errors import DeviceError, UsageError
from ..frames import Frame, Intrinsics, StreamKind
from ..geometry.calibration import Calibration
from .base import StreamInfo, ThreadedDevice, make_frameset, require
from .camerafit import ColorFit
from .freenect2reg import calibrate, depth_intrinsics
from .kinect2 import kinect_v2_streams

__all__ = ["Freenect2Device"]

log = logging.getLogger(__name__)


def _default_module() -> Any:
    hint = (
        "build libfreenect2, set LIBFREENECT2_INSTALL_PREFIX, then "
        "pip install pylibfreenect2 (see the README)"
    )
    return require("pylibfreenect2", "", hint=hint)


class Freenect2Device(ThreadedDevice):
    """A Kinect v2 through libfreenect2. *serial* picks a device (default: the first)."""

    kind = "kinect2-libfreenect2"

    def __init__(
        self,
        serial: str | None = None,
        *,
        device_id: str | None = None,
        streams: list[StreamKind | str] | None = None,
        module: Callable[[], Any] = _default_module,
        timeout_ms: int = 1000,
    ) -> None:
        super().__init__()
        self.fn2 = module()
        self.kinds = tuple(StreamKind(s) for s in (streams or ("color", "depth", "infrared")))
        if StreamKind.body in self.kinds:
            raise DeviceError("libfreenect2 has no body tracking (use the Windows SDK for bodies)")
        self._ctx = self.fn2.Freenect2()
        if self._ctx.enumerateDevices() == 0:
            raise DeviceError("no Kinect v2 found by libfreenect2 (is it on a USB 3 port?)")
        self.serial = serial or self._ctx.getDeviceSerialNumber(0)
        if isinstance(self.serial, bytes):
            self.serial = self.serial.decode()
        self.id = device_id or f"kinect2-{self.serial}"
        self.name = f"Kinect v2 {self.serial} (libfreenect2)"
        self._timeout = timeout_ms
        self._dev: Any = None
        self._listener: Any = None
        self._intr: Intrinsics | None = None
        self._calibration: Calibration | None = None
        self.fit: ColorFit | None = None
        """How closely the published color camera follows libfreenect2's registration."""
        self._seq = 0

    @property
    def streams(self) -> dict[StreamKind, StreamInfo]:
        return kinect_v2_streams(self.kinds, self._intr, native_color="bgrx8")

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "serial": self.serial,
            "body_tracking": False,
            "note": "libfreenect2 has no body tracking",
        }

    def _open(self) -> None:
        fn2 = self.fn2
        dev = self._ctx.openDevice(self.serial)
        if dev is None:
            raise DeviceError(f"Kinect v2 {self.serial} did not open")
        types = 0
        if StreamKind.color in self.kinds:
            types |= fn2.FrameType.Color
        if StreamKind.depth in self.kinds:
            types |= fn2.FrameType.Depth
        if StreamKind.infrared in self.kinds:
            types |= fn2.FrameType.Ir
        listener = fn2.SyncMultiFrameListener(types)
        dev.setColorFrameListener(listener)
        dev.setIrAndDepthFrameListener(listener)
        if not dev.start():
            dev.close()
            raise DeviceError(f"Kinect v2 {self.serial} did not start streaming")
        ir = dev.getIrCameraParams()
        self._intr = depth_intrinsics(ir)
        self._dev, self._listener, self._seq = dev, listener, 0
        try:
            self._calibration, self.fit = calibrate(self.id, ir, dev.getColorCameraParams())
        except (DeviceError, UsageError, AttributeError) as exc:  # serve it, uncalibrated
            log.warning("%s: no calibration from the factory parameters: %s", self.id, exc)

    def calibration(self) -> Calibration | None:
        """The factory parameters, the color camera fitted to libfreenect2's registration."""
        return self._calibration

    def _close(self) -> None:
        if self._dev is not None:
            try:
                self._dev.stop()
            finally:
                self._dev.close()
                self._dev = None

    def _capture(self, stop: threading.Event) -> list[Frame]:
        frames = self._listener.waitForNewFrame(self._timeout)
        if frames is None:
            if stop.is_set():
                return []
            raise DeviceError(f"Kinect v2 {self.serial} stopped delivering frames")
        try:
            data: dict[StreamKind, np.ndarray] = {}
            if StreamKind.color in self.kinds:
                data[StreamKind.color] = np.array(frames["color"].asarray(), np.uint8, copy=True)
            if StreamKind.depth in self.kinds:
                mm = frames["depth"].asarray(np.float32)
                data[StreamKind.depth] = np.clip(np.rint(mm), 0, 65535).astype(np.uint16)
            if StreamKind.infrared in self.kinds:
                ir = frames["ir"].asarray(np.float32)
                data[StreamKind.infrared] = np.clip(np.rint(ir), 0, 65535).astype(np.uint16)
        finally:
            self._listener.release(frames)
        now = time.time_ns()
        seq, self._seq = self._seq, self._seq + 1
        intr = {StreamKind.depth: self._intr, StreamKind.infrared: self._intr}
        return make_frameset(self.id, seq, data, intr, device_time_ns=now, host_time_ns=now)
