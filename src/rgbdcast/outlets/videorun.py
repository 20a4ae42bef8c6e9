"""A video stream's units kept whole for a consumer that decodes them itself (Foxglove's
``CompressedVideo``, ROS 2's ``.../foxglove`` and ``.../ffmpeg`` topics).

How this works: unlike the outlets' other topics (newest wins), a video topic must get every
unit, in order, each run starting at a keyframe. :class:`UnitRun` queues the units it is offered
(a few: :data:`MAX_QUEUED`) for the topic's thread. It keeps nothing of a run it cannot keep
whole: when a consumer starts watching, when a unit is missing (a gap in ``au``: dropped before
it reached the outlet, as in a bridge), or when the queue overflows (the thread fell behind), it
skips units until a keyframe and asks the stream for one (*keyframe*: the server's publisher, or
in a bridge the origin server, which rate-limits them).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from typing import Any

from ..codecs.video import is_keyframe
from ..protocol.envelope import FrameHeader

__all__ = ["FORMATS", "MAX_QUEUED", "UnitRun"]

MAX_QUEUED = 8
"""Units a video topic holds for its thread; one more and the run is cut (skip to a keyframe)."""
FORMATS = {"h264": "h264", "hevc": "h265"}
"""Our codec names as Foxglove's ``CompressedVideo.format`` spells them."""

Unit = tuple[FrameHeader, bytes, Any]
"""A queued unit: its header, its bytes, and what the offerer attached (e.g. its source frame)."""


class UnitRun:
    """The queue of one video stream's units between a publisher tap and a topic's thread."""

    def __init__(
        self, codec: str, keyframe: Callable[[], object], max_queued: int = MAX_QUEUED
    ) -> None:
        self.codec = codec
        self.max_queued = max_queued
        self._keyframe = keyframe
        self._lock = threading.Lock()
        self._units: deque[Unit] = deque()
        self._waiting = True
        self._watched = False
        self._last_au: int | None = None
        self.skipped = 0
        """Units not queued: after a gap, an overflow or a new consumer, before a keyframe."""
        self.keyframe_requests = 0

    def restart(self) -> None:
        """Cut the run here: queue nothing until a keyframe, and ask for one."""
        self._waiting = True
        self.keyframe_requests += 1
        self._keyframe()

    def idle(self) -> None:
        """Nobody wants the stream now: the next consumer starts at a fresh keyframe."""
        self._watched = False
        self._last_au = None

    def offer(self, head: FrameHeader, payload: Any, watched: bool, extra: Any = None) -> bool:
        """On the tap's thread: queue the unit if it continues a whole run (True: wake the
        topic's thread). *watched* is whether a consumer that needs a keyframe to start is
        there; its arrival asks for one."""
        if watched and not self._watched:
            self.restart()
        self._watched = watched
        if self._last_au is not None and head.au != self._last_au + 1:
            self.restart()
        self._last_au = head.au
        if self._waiting:
            if not is_keyframe(self.codec, payload):
                self.skipped += 1
                return False
            self._waiting = False
        with self._lock:
            if len(self._units) >= self.max_queued:  # the thread fell behind: cut the run here
                self.skipped += len(self._units) + 1
                self._units.clear()
                self.restart()
                return False
            self._units.append((head, bytes(memoryview(payload).cast("B")), extra))
        return True

    def take(self) -> list[Unit]:
        """On the topic's thread: every queued unit, oldest first."""
        with self._lock:
            units = list(self._units)
            self._units.clear()
        return units

    def counts(self) -> dict[str, int]:
        return {"video_skipped": self.skipped, "keyframe_requests": self.keyframe_requests}
