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
from typing import TYPE_CHECKING

from .codecs.video import VideoDecoder
from .errors import ProtocolError, UsageError
from .frames import Frame, StreamKind
from .protocol.envelope import EncodedFrame, frame_from_header

if TYPE_CHECKING:
    from ._clientbase import SubscriptionBase

__all__ = ["KEYFRAME_RETRY_S", "decode_video"]

KEYFRAME_RETRY_S = 0.25
"""A video subscription waiting for a keyframe asks the server again after this long."""


def decode_video(
    sub: SubscriptionBase, encoded: EncodedFrame, ask: Callable[[str, StreamKind], None]
) -> Frame | None:
    """Feed a video unit to *sub*'s decoder; its frame, or None while the chain is broken
    (then ``ask(device_id, kind)`` requests a keyframe, at most every :data:`KEYFRAME_RETRY_S`)."""
    h = encoded.header
    dec = sub.video
    try:
        if dec is None or dec.codec != h.codec:
            dec = sub.video = VideoDecoder(h.codec)
        image = dec.feed(encoded.payload, h.au, h.key, h.shape, h.dtype)
    except ProtocolError as exc:
        sub._bad(exc)
        image = None
    except UsageError as exc:  # PyAV is not installed: say so where frames are read
        sub._bad(ProtocolError(str(exc)))
        return None
    if image is None:
        now = time.monotonic()
        waiting = dec is not None and dec.wants_keyframe
        if waiting and now - sub._asked_keyframe_at >= KEYFRAME_RETRY_S:
            sub._asked_keyframe_at = now
            sub.keyframe_requests += 1
            ask(sub.device_id, sub.kind)
        return None
    try:
        return frame_from_header(h, image)
    except ProtocolError as exc:
        sub._bad(exc)
        return None
