"""Video to browsers that decode it themselves (WebCodecs): every unit, in order.

How this works: a video color stream's publisher tap offers each unit (:meth:`submit_unit`);
the viewer keeps the last :data:`MAX_UNITS` per stream, shared by all browsers. A browser that
said it decodes H.264 (``{"type": "video", "codecs": ["h264"]}``) gets that stream's units one at
a time, each after its ack for the one before, never skipping one: its decoder needs them all.
It starts at the newest keyframe held (and asks the stream for a fresh one); a browser so far
behind that its next unit is gone starts again at a keyframe (counted as skipped). Browsers that
do not decode video get JPEG of the same frames, made only while one of them watches.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from dataclasses import dataclass
from typing import Any

from websockets.exceptions import ConnectionClosed

from ..frames import Frame
from ..protocol.viewer import avc_codec_string, video_message

__all__ = ["ACK_TIMEOUT_S", "MAX_UNITS", "VideoSending"]

log = logging.getLogger(__name__)

ACK_TIMEOUT_S = 5.0
"""A stream whose page has not acked its last frame for this long is sent the next one anyway."""
MAX_UNITS = 120
"""Video units held per stream for browsers that decode video (at least one keyframe's run at
the default GOP of 60); a browser further behind restarts at a keyframe."""


@dataclass(frozen=True, slots=True)
class _Unit:
    """One video unit as browsers that decode video get it."""

    au: int
    key: bool
    meta: dict[str, Any]
    payload: bytes
    codec: str


class VideoSending:
    """The web viewer's video part (a mixin of :class:`~rgbdcast.outlets.webviewer.WebViewer`,
    whose loop, wake-up events, backend and stats it uses)."""

    _units: dict[str, deque[_Unit]]
    _events: dict[str, asyncio.Event]
    _loop: Any
    backend: Any
    stats: Any

    def _wake(self, key: str) -> None:
        raise NotImplementedError

    def submit_unit(self, frame: Frame, au: int, key: bool, unit: Any) -> None:
        """Offer a video stream's unit (any thread; every unit, in order): browsers that decode
        H.264 get each one in order, the others JPEG of *frame* (offer it with :meth:`submit`)."""
        name = f"{frame.device_id}/{frame.kind.value}"
        ring = self._units.get(name)
        if ring is None:
            ring = self._units[name] = deque(maxlen=MAX_UNITS)
        codec = (avc_codec_string(unit) or "") if key else ""
        meta = {
            "device": frame.device_id,
            "stream": frame.kind.value,
            "seq": frame.seq,
            "t_host_ns": frame.host_time_ns,
            "height": frame.shape[0],
            "width": frame.shape[1],
        }
        ring.append(_Unit(au, key, meta, bytes(memoryview(unit).cast("B")), codec))
        loop = self._loop
        if loop is not None and name in self._events:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._wake, name)

    def _ask_keyframe(self, key: str) -> None:
        ask = getattr(self.backend, "keyframe", None)
        if ask is not None:
            try:
                ask(key)
            except Exception as exc:  # a device going away
                log.debug("keyframe request for %s failed: %s", key, exc)

    async def _next_unit(self, key: str, want: int | None) -> tuple[_Unit, bool]:
        """The unit numbered *want*, or when it is gone (or *want* is None) the newest keyframe
        held; and whether the run was cut (the browser missed units). Waits for one to come."""
        cut = False
        while True:
            units = list(self._units.get(key, ()))
            if want is not None and units and units[-1].au >= want:
                found = next((u for u in units if u.au == want), None)
                if found is not None:
                    return found, cut
                want, cut = None, True  # evicted, or never sent: start again at a keyframe
                self._ask_keyframe(key)
            if want is None:
                keys = [u for u in units if u.key]
                if keys:
                    return keys[-1], cut
            ev = self._events.get(key)
            if ev is None:
                ev = self._events[key] = asyncio.Event()
                continue  # look again: a unit may have come before the event existed
            await ev.wait()

    async def _send_video(self, viewer: Any, key: str) -> None:
        """Every unit of a video stream, in order, one in flight: the browser decodes them.
        If it falls so far behind that the next unit is gone, it restarts at a keyframe."""
        ack = viewer.acks[key] = asyncio.Event()
        ack.set()
        self._ask_keyframe(key)  # a fresh keyframe soon, rather than catching up from an old one
        want: int | None = None
        while True:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(ack.wait(), ACK_TIMEOUT_S)
            unit, cut = await self._next_unit(key, want)
            if cut:
                viewer.skipped[key] += 1
            msg = video_message(unit.meta, unit.payload, unit.au, unit.key, unit.codec)
            if not await self._deliver(viewer, key, ack, msg):
                return
            want = unit.au + 1

    async def _deliver(self, viewer: Any, key: str, ack: asyncio.Event, msg: bytes) -> bool:
        """Send one of a stream's messages to a browser (its ack is awaited before the next)
        and count it; False once the browser is gone."""
        ack.clear()
        try:
            await viewer.ws.send(msg)
        except ConnectionClosed:
            return False
        viewer.sent[key] += 1
        self.stats.frames_sent += 1
        self.stats.bytes_sent += len(msg)
        return True
