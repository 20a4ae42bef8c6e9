"""A video stream (``h264``, ``hevc``) shown live in Foxglove as ``CompressedVideo``.

How this works: the Foxglove app decodes the units itself, so they must reach it in order and
each run must start at a keyframe: a :class:`~.videorun.UnitRun` queues them for the topic's
thread, which sends them all, in order, as they were sent on the ZeroMQ stream, and asks for a
keyframe when a Foxglove client starts watching or a run is cut. What the Foxglove SDK drops for
a client that cannot keep up (its backlog) is beyond this: that client may see a damaged picture
until the next keyframe (``--color-gop``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..frames import Intrinsics, StreamKind
from ..geometry.calibration import Calibration, optical_frame
from ..protocol import foxglove as fx
from ..protocol.envelope import parse_header
from .foxglovedev import SlotWorker, log_calibration
from .videorun import FORMATS, UnitRun

__all__ = ["VideoTopics"]


class VideoTopics(SlotWorker):
    """A video stream's ``CompressedVideo`` topic and its calibration topic."""

    def __init__(
        self,
        context: Any,
        device: str,
        kind: StreamKind,
        codec: str,
        calibration: Callable[[], Calibration | None],
        keyframe: Callable[[], object],
    ) -> None:
        from foxglove import channels

        base = f"/{device}/{kind.value}"
        self.kind = kind
        self.codec = codec
        self.frame_id = optical_frame(device, kind)
        self.main: Any = channels.CompressedVideoChannel(base, context=context)
        self.info: Any = channels.CameraCalibrationChannel(f"{base}/calibration", context=context)
        self.topics = [self.main.topic(), self.info.topic()]
        self._calibration = calibration
        self.run = UnitRun(codec, keyframe)
        super().__init__(
            f"rgbdcast-foxglove-{device}-{kind.value}", self._publish, f"fox-{kind.value}"
        )

    def wanted(self) -> bool:
        return bool(self.main.has_sinks() or self.info.has_sinks())

    def submit(self, frame: Any, header: bytes, payload: Any) -> None:
        """A publisher tap (on its thread): queue the unit if it continues a whole run."""
        if not self.wanted():
            self.run.idle()
            return
        if self.run.offer(parse_header(header), payload, bool(self.main.has_sinks())):
            self.slot.put(True)  # wake the thread

    def _publish(self, _: object) -> None:
        for head, unit, _extra in self.run.take():
            t = head.host_time_ns
            if self.main.has_sinks():
                msg = fx.compressed_video(t, self.frame_id, unit, FORMATS[self.codec])
                self.main.log(msg, log_time=t)
            if self.info.has_sinks():
                intr = Intrinsics.from_dict(head.intrinsics) if head.intrinsics else None
                h, w = head.shape[:2]
                log_calibration(
                    self.info, self._calibration, self.kind, self.frame_id, t, intr, w, h
                )

    def close(self) -> None:
        super().close()
        for ch in (self.main, self.info):
            ch.close()

    def counts(self) -> dict[str, int]:
        return {**super().counts(), **self.run.counts()}
