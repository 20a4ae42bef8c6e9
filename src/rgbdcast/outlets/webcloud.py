"""The web viewer's 3-D view of a device: its colored point cloud with the skeleton.

How this works: frame taps on the device's depth, color and body streams (on the device's
thread) keep the newest of each; when depth and color of one frameset are both in, the viewer is
offered a ``<device>/points`` message it makes only if a browser shows the 3-D view: the cloud
(registered, occlusion-tested, every second pixel of every second row: ~45,000 points, ~400 KB)
and the bodies of that frameset, rendered on the viewer's pool.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from functools import partial
from typing import Any

from ..frames import Frame, StreamKind
from ..geometry.calibration import TABLE_DEPTH_TO_CAMERA, Calibration
from ..geometry.pointcloud import point_cloud
from ..protocol.viewer import cloud_message
from .base import DevicePort
from .webviewer import WebViewer

__all__ = ["DECIMATE", "CloudTap", "FramesetPairs"]

DECIMATE = 2


class FramesetPairs:
    """The newest depth, color and body items of one device (frames, or encoded frames as
    received): :meth:`offer` returns depth and color once both of one frameset are in."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._depth: tuple[int, Any] | None = None
        self._color: tuple[int, Any] | None = None
        self.bodies: tuple[int, Any] | None = None
        """The newest body item and its frameset id."""

    def offer(self, kind: StreamKind, frameset: int, item: Any) -> tuple[Any, Any] | None:
        with self._lock:
            if kind is StreamKind.body:
                self.bodies = (frameset, item)
                return None
            if kind is StreamKind.depth:
                self._depth = (frameset, item)
            elif kind is StreamKind.color:
                self._color = (frameset, item)
            depth, color = self._depth, self._color
            if depth is None or color is None or depth[0] != color[0]:
                return None
            self._depth = self._color = None
            return depth[1], color[1]

    def bodies_near(self, frameset: int) -> Any:
        """The newest body item if it is of *frameset* or the one before (bodies come after
        their frameset's images), else None."""
        bodies = self.bodies
        return bodies[1] if bodies is not None and abs(bodies[0] - frameset) <= 1 else None


class CloudTap:
    """Pairs a device's depth and color frames for the viewer's 3-D view."""

    def __init__(self, viewer: WebViewer, device: DevicePort) -> None:
        self._viewer = viewer
        self._device = device
        self._pairs = FramesetPairs()
        for kind in (StreamKind.depth, StreamKind.color, StreamKind.body):
            port = device.streams.get(kind)
            if port is not None:
                port.tap_frames(self.submit)

    @staticmethod
    def possible(device: DevicePort) -> bool:
        return StreamKind.depth in device.streams and StreamKind.color in device.streams

    def calibrated(self) -> bool:
        cal = self._device.calibration()
        return cal is not None and cal.registrable

    def submit(self, frame: Frame) -> None:
        """A frame tap: keep it; offer a cloud when depth and color of one frameset are in."""
        if not self._viewer.watching:
            return
        pair = self._pairs.offer(frame.kind, frame.frameset_id, frame)
        if pair is not None:
            make: Callable[[float], bytes] = partial(self._make, *pair)
            self._viewer.submit_made(f"{self._device.id}/points", pair[0].seq, make)

    def _make(self, depth: Frame, color: Frame, send_ms: float) -> bytes:
        cal: Calibration | None = self._device.calibration()
        if cal is None or not cal.registrable:
            raise ValueError(f"device {self._device.id} has no calibration to make a cloud of")
        rays: Any = None
        if TABLE_DEPTH_TO_CAMERA in cal.tables:
            rays = self._device.calibration_table(TABLE_DEPTH_TO_CAMERA)
        cloud = point_cloud(depth.array, color.array, cal, rays=rays, decimate=DECIMATE)
        bodies = self._pairs.bodies_near(depth.frameset_id)
        return cloud_message(
            self._device.id,
            depth.seq,
            depth.host_time_ns,
            cloud.points,
            cloud.colors,
            bodies.bodies if bodies is not None else (),
            send_ms,
        )
