"""A video stream (``h264``, ``hevc``) shown live in Foxglove as ``CompressedVideo``.

How this works: the Foxglove app decodes the units itself, so they must reach it in order and
each run must start at a keyframe. Unlike the outlet's other topics (newest wins), a video topic
queues the units it is handed (a few: :data:`MAX_QUEUED`) and its thread sends them all, in
order, as they were sent on the ZeroMQ stream. It shows nothing of a run it cannot show whole:
when a Foxglove client starts watching, when a unit is missing (a gap in ``au``: dropped before
it reached the outlet, as in a bridge), or when its queue overflows, it skips units until a
keyframe and asks the stream for one (``keyframe``: the server's publisher, or in a bridge the
origin server). What the Foxglove SDK drops for a client that cannot keep up (its backlog) is
beyond this: that client may see a damaged picture until the next keyframe (``--color-gop``).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from typing import Any

from ..codecs.video import is_keyframe
from ..frames import Intrinsics, StreamKind
from ..geometry.calibration import Calibration, optical_frame
from ..protocol import foxglove as fx
from ..protocol.envelope import FrameHeader, parse_header
from .foxglovedev import SlotWorker, log_calibration

__all__ = ["MAX_QUEUED", "VideoTopics"]

MAX_QUEUED = 8
"""Units a video topic holds for its thread; one more and the run is cut (skip to a keyframe)."""
FORMATS = {"h264": "h264", "hevc": "h265"}


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
        self._keyframe = keyframe
        self._lock = threading.Lock()
        self._units: deque[tuple[FrameHeader, bytes]] = deque()
        self._waiting = True
        self._watched = False
        self._last_au: int | None = None
        self.skipped = 0
        """Units not sent: after a gap, an overflow or a new client, before a keyframe."""
        self.keyframe_requests = 0
        super().__init__(
            f"rgbdcast-foxglove-{device}-{kind.value}", self._publish, f"fox-{kind.value}"
        )

    def wanted(self) -> bool:
        return bool(self.main.has_sinks() or self.info.has_sinks())

    def _ask(self) -> None:
        self._waiting = True
        self.keyframe_requests += 1
        self._keyframe()

    def submit(self, frame: Any, header: bytes, payload: Any) -> None:
        """A publisher tap (on its thread): queue the unit if it continues a whole run."""
        if not self.wanted():
            self._watched = False
            return
        head = parse_header(header)
        watched = bool(self.main.has_sinks())
        if watched and not self._watched:  # a client starts: it needs a keyframe first
            self._ask()
        self._watched = watched
        if self._last_au is not None and head.au != self._last_au + 1:
            self._ask()
        self._last_au = head.au
        if self._waiting:
            if not is_keyframe(self.codec, payload):
                self.skipped += 1
                return
            self._waiting = False
        with self._lock:
            if len(self._units) >= MAX_QUEUED:  # the thread fell behind: cut the run here
                self.skipped += len(self._units) + 1
                self._units.clear()
                self._ask()
                return
            self._units.append((head, bytes(memoryview(payload).cast("B"))))
        self.slot.put(True)  # wake the thread

    def _publish(self, _: object) -> None:
        with self._lock:
            units = list(self._units)
            self._units.clear()
        for head, unit in units:
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
        return {
            **super().counts(),
            "video_skipped": self.skipped,
            "keyframe_requests": self.keyframe_requests,
        }
