"""Serve any streamkinect2-style kinect object (``unique_kinect_id`` + ``on_depth_frame``)."""

from __future__ import annotations

import itertools
import time
from typing import Any

import numpy as np

from ..frames import Frame, StreamKind
from .base import Device, StreamInfo

__all__ = ["LegacyKinect"]


class LegacyKinect(Device):
    """Wraps an object implementing streamkinect2's ``MockKinect`` interface.

    Its ``on_depth_frame`` signal (``depth_frame=`` with ``data`` and ``shape=(w, h)``) becomes
    depth :class:`Frame` values; ``start``/``stop`` are passed through.
    """

    kind = "streamkinect2"

    def __init__(self, kinect: Any) -> None:
        self.kinect = kinect
        self.id = str(kinect.unique_kinect_id)
        self.name = getattr(kinect, "name", f"Kinect {self.id}")
        self._seq = itertools.count()
        self._shape = (0, 0)
        self._running = False

    @property
    def streams(self) -> dict[StreamKind, StreamInfo]:
        w, h = self._shape
        return {
            StreamKind.depth: StreamInfo(
                kind=StreamKind.depth, width=w, height=h, dtype="<u2", units="mm"
            )
        }

    @property
    def is_running(self) -> bool:
        return self._running

    def _on_depth(self, sender: Any, depth_frame: Any = None, **_: Any) -> None:
        w, h = depth_frame.shape
        self._shape = (w, h)
        arr = np.frombuffer(depth_frame.data, np.uint16).reshape(h, w).copy()
        seq = next(self._seq)
        now = time.time_ns()
        self.on_frame.send(
            self,
            frame=Frame(
                device_id=self.id,
                kind=StreamKind.depth,
                seq=seq,
                data=arr,
                device_time_ns=now,
                host_time_ns=now,
                frameset_id=seq,
            ),
        )

    def start(self) -> None:
        if not self._running:
            type(self.kinect).on_depth_frame.connect(self._on_depth, sender=self.kinect, weak=False)
            self._running = True
            if hasattr(self.kinect, "start"):
                self.kinect.start()

    def stop(self) -> None:
        if self._running:
            type(self.kinect).on_depth_frame.disconnect(self._on_depth, sender=self.kinect)
            self._running = False
