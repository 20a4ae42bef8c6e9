"""How a client's video subscription decodes (shared by ``Client`` and ``AsyncClient``).

How this works: a video unit is fed to the subscription's decoder on the receiving side, in the
order it arrived, before the newest-wins queue: a frame the queue drops later was still decoded,
because the next one is built on it. That costs a decode per unit received (see BENCHMARKS.md)
but means a slow reader never breaks the chain. Only a unit lost before it reached us (ZeroMQ's
high-water mark dropped it for us, or we joined mid-chain) breaks it; then nothing is shown
until a keyframe comes, and the server is asked for one at most every :data:`KEYFRAME_RETRY_S`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from .codecs.video import VideoDecoder
from .errors import ProtocolError, UsageError
from .frames import Frame
from .protocol.envelope import EncodedFrame, frame_from_header

__all__ = ["KEYFRAME_RETRY_S", "VideoState", "decode_video"]

KEYFRAME_RETRY_S = 0.25
"""A video subscription waiting for a keyframe asks the server again after this long."""


@dataclass
class VideoState:
    """What a receiver keeps per video stream: its decoder and its keyframe requests."""

    decoder: VideoDecoder | None = None
    requests: int = 0
    """Keyframes asked for (after a gap or a late join)."""
    asked_at: float = -KEYFRAME_RETRY_S


def decode_video(
    state: VideoState,
    encoded: EncodedFrame,
    bad: Callable[[ProtocolError], None],
    ask: Callable[[], None],
) -> Frame | None:
    """Feed a video unit to *state*'s decoder; its frame, or None while the chain is broken
    (then ``ask()`` requests a keyframe, at most every :data:`KEYFRAME_RETRY_S`). A unit that
    does not decode goes to *bad*."""
    h = encoded.header
    dec = state.decoder
    try:
        if dec is None or dec.codec != h.codec:
            dec = state.decoder = VideoDecoder(h.codec)
        image = dec.feed(encoded.payload, h.au, h.key, h.shape, h.dtype)
    except ProtocolError as exc:
        bad(exc)
        image = None
    except UsageError as exc:  # PyAV is not installed: say so where frames are read
        bad(ProtocolError(str(exc)))
        return None
    if image is None:
        now = time.monotonic()
        waiting = dec is not None and dec.wants_keyframe
        if waiting and now - state.asked_at >= KEYFRAME_RETRY_S:
            state.asked_at = now
            state.requests += 1
            ask()
        return None
    try:
        return frame_from_header(h, image)
    except ProtocolError as exc:
        bad(exc)
        return None
