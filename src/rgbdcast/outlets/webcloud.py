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

__all__ = ["DECIMATE", "CloudTap"]

DECIMATE = 2


class CloudTap:
    """Pairs a device's depth and color frames for the viewer's 3-D view."""

    def __init__(self, viewer: WebViewer, device: DevicePort) -> None:
        self._viewer = viewer
        self._device = device
        self._lock = threading.Lock()
        self._depth: Frame | None = None
        self._color: Frame | None = None
        self._bodies: Frame | None = None
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
        with self._lock:
            if frame.kind is StreamKind.body:
                self._bodies = frame
                return
            if frame.kind is StreamKind.depth:
                self._depth = frame
            else:
                self._color = frame
            depth, color = self._depth, self._color
            if depth is None or color is None or depth.frameset_id != color.frameset_id:
                return
            self._depth = self._color = None
        make: Callable[[float], bytes] = partial(self._make, depth, color)
        self._viewer.submit_made(f"{self._device.id}/points", depth.seq, make)

    def _make(self, depth: Frame, color: Frame, send_ms: float) -> bytes:
        cal: Calibration | None = self._device.calibration()
        if cal is None or not cal.registrable:
            raise ValueError(f"device {self._device.id} has no calibration to make a cloud of")
        rays: Any = None
        if TABLE_DEPTH_TO_CAMERA in cal.tables:
            rays = self._device.calibration_table(TABLE_DEPTH_TO_CAMERA)
        cloud = point_cloud(depth.array, color.array, cal, rays=rays, decimate=DECIMATE)
        # the bodies of this frameset (they come after its images), else of the one before
        bodies = self._bodies
        near = bodies is not None and abs(bodies.frameset_id - depth.frameset_id) <= 1
        return cloud_message(
            self._device.id,
            depth.seq,
            depth.host_time_ns,
            cloud.points,
            cloud.colors,
            bodies.bodies if near and bodies is not None else (),
            send_ms,
        )
