"""A recorded video stream read back in order: unit numbers, and pixels on demand.

How this works: a video unit decodes only after the units since its keyframe. While a
recording is read, :meth:`VideoChain.add` numbers each unit (``au``, counting from 0 in file
order) and keeps the units of the current and the previous keyframe's run. A frame's pixels are
decoded only if someone reads them (a server re-encoding the replay as JPEG; a replay served as
video passes the units through and decodes nothing): :meth:`VideoChain.decode` feeds its decoder
from where it stopped, or from the run's keyframe, up to the unit asked for. The recorder keeps
only runs that start at a keyframe, so every unit kept here is decodable.
"""

from __future__ import annotations

import threading

import numpy as np

from ..codecs.video import VideoDecoder, is_keyframe, picture_size
from ..errors import CodecError
from ..frames import Encoded, StreamKind

__all__ = ["MAX_RUN", "VideoChain"]

MAX_RUN = 1200
"""Units kept since a keyframe; a run longer than this (no keyframe for 40 s at 30 fps) is not
kept, and its units are skipped (the replay waits for the next keyframe)."""


class VideoChain:
    """One recorded video channel (codec ``h264`` or ``hevc``) of stream *kind*."""

    def __init__(self, codec: str, kind: StreamKind) -> None:
        self.codec = codec
        self.kind = kind
        self.dtype = "<u2" if kind is StreamKind.infrared else "|u1"
        self.shape: tuple[int, ...] | None = None
        self._next = 0
        self._runs: list[list[tuple[int, bytes]]] = []  # the previous run and the current one
        self._lock = threading.Lock()
        self._dec: VideoDecoder | None = None
        self._dec_run: int | None = None  # the keyframe number the decoder started from
        self._dec_at = -1

    def add(self, payload: bytes) -> Encoded | None:
        """The unit as an :class:`Encoded` with its number, or None if it cannot be decoded
        (no keyframe before it in this file)."""
        au = self._next
        self._next += 1
        key = is_keyframe(self.codec, payload)
        with self._lock:
            if key:
                if self.shape is None:
                    self.shape = self._size(payload)
                self._runs = [*self._runs[-1:], [(au, payload)]]
            elif self._runs and self._runs[-1] and len(self._runs[-1]) < MAX_RUN:
                self._runs[-1].append((au, payload))
            else:
                if self._runs:
                    self._runs[-1] = []
                return None
        assert self.shape is not None
        return Encoded(
            codec=self.codec,
            payload=payload,
            shape=self.shape,
            dtype=self.dtype,
            decode=lambda _payload: self.decode(au),
            au=au,
        )

    def _size(self, keyframe: bytes) -> tuple[int, ...]:
        w, h = picture_size(self.codec, keyframe)
        return (h, w, 3) if self.kind is StreamKind.color else (h, w)

    def decode(self, au: int) -> np.ndarray:
        """The picture of unit *au* (it must still be in the current or the previous run)."""
        assert self.shape is not None
        with self._lock:
            run = next((r for r in self._runs if r and r[0][0] <= au <= r[-1][0]), None)
            if run is None:
                raise CodecError(f"recorded video unit {au} is no longer held for decoding")
            if self._dec is None or self._dec_run != run[0][0] or self._dec_at >= au:
                self._dec, self._dec_run, self._dec_at = VideoDecoder(self.codec), run[0][0], -1
            picture = None
            for n, payload in run:
                if self._dec_at < n <= au:
                    picture = self._dec.feed(payload, n, n == run[0][0], self.shape, self.dtype)
                    self._dec_at = n
            if picture is None:
                raise CodecError(f"recorded video unit {au} did not decode")
            out: np.ndarray = picture
            return out
