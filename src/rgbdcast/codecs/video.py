"""``h264`` and ``hevc``: video color (and infrared, for viewing) through FFmpeg (PyAV, the
``[video]`` extra). Infrared is coded as 8-bit gray after a gamma of 2 and decodes to 16 bits
again: the levels of ``round(65535 * (i / 255)^2)``, plus the codec's own loss; a picture to look
at, not a measurement (``qir`` or ``grad-zstd`` keep those).

How this works: video is stateful, so besides the stateless ``encode``/``decode`` of every codec
(one self-contained keyframe in, one image out: what a recording's single frame or a test needs)
these codecs make a stream encoder (:class:`~rgbdcast.codecs.videoenc.VideoEncoder`, one per
published stream) and a stream decoder (:class:`VideoDecoder`, one per subscription).

Every access unit travels with its number in the encoder's chain (``au``) and whether it is a
keyframe (``key``). The decoder feeds its FFmpeg decoder every unit in order. When a number is
missing (the unit was dropped on the way), or it joined after the chain began, the chain is
broken: it shows nothing until the next keyframe, and says so (``wants_keyframe``) so that its
owner can ask the server for one. So a picture it returns is never built on a missing reference.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import CodecError
from ..frames import FrameData, StreamKind
from .base import Buffer, CodecInfo, register
from .videoenc import VideoEncoder, import_av

__all__ = [
    "VIDEO_CODECS",
    "VideoCodec",
    "VideoDecoder",
    "is_keyframe",
    "is_video",
    "picture_size",
]

VIDEO_CODECS = ("h264", "hevc")


def is_video(codec: str) -> bool:
    """Whether frames of *codec* depend on earlier frames (need a stream decoder)."""
    return codec in VIDEO_CODECS


class VideoDecoder:
    """One subscription's decoder: access units in, pictures out, never a corrupt one.

    >>> # dec = VideoDecoder("h264"); img = dec.feed(payload, au=0, key=True, shape=(1080, 1920, 3))
    """

    def __init__(self, codec: str, threads: int = 2) -> None:
        if codec not in VIDEO_CODECS:
            raise ValueError(f"{codec!r} is not a video codec")
        self.codec = codec
        self.threads = threads
        self._av = import_av()
        self._ctx: Any = None
        self._next_au: int | None = None
        self.decoded = 0
        """Pictures returned."""
        self.skipped = 0
        """Units not shown because the chain was broken (waiting for a keyframe)."""
        self.gaps = 0
        """Breaks in the chain: missing units (or a late start)."""
        self.errors = 0
        """Units the decoder refused (the chain counts as broken after one)."""

    @property
    def wants_keyframe(self) -> bool:
        """True while the chain is broken: the owner should ask the server for a keyframe."""
        return self._ctx is None

    def _open(self) -> Any:
        ctx = self._av.CodecContext.create(self.codec, "r")
        ctx.thread_type = "SLICE"  # frame threads would hold pictures back by a frame each
        ctx.thread_count = self.threads
        return ctx

    def _break(self) -> None:
        self._ctx = None  # PyAV frees the FFmpeg context with its last reference

    def feed(
        self,
        payload: Buffer,
        au: int | None,
        key: bool,
        shape: tuple[int, ...],
        dtype: str = "|u1",
    ) -> Any:
        """Decode the unit numbered *au*; the picture (*shape* ``(H, W, 3)``: BGR; ``(H, W)``:
        gray, 16-bit if *dtype* says so), or None while the chain is broken.
        :class:`CodecError` if a unit that should decode does not."""
        if au is None or (self._next_au is not None and au != self._next_au):
            if self._ctx is not None:
                self.gaps += 1
            self._break()
        self._next_au = None if au is None else au + 1
        if self._ctx is None:
            if not (key and is_keyframe(self.codec, payload)):  # never trust the flag alone
                self.skipped += 1
                return None
            self._ctx = self._open()
        try:
            image = _decode_one(self._av, self._ctx, payload, shape, dtype)
        except CodecError:
            self.errors += 1
            self._break()
            raise
        self.decoded += 1
        return image

    def close(self) -> None:
        self._break()


_IDR_TYPES = {"h264": frozenset({5}), "hevc": frozenset({16, 17, 18, 19, 20, 21})}
_SEARCH_BYTES = 65536
"""Parameter sets, SEI and the first slice's NAL header sit at the start of a unit."""


def is_keyframe(codec: str, payload: Buffer) -> bool:
    """Whether an Annex B access unit starts a chain: its first picture NAL unit is an IDR (or
    other random-access picture). A look at the NAL types, so that a peer cannot pass a unit
    off as a keyframe by its flag alone."""
    head = bytes(memoryview(payload)[:_SEARCH_BYTES])
    start = head.find(b"\x00\x00\x01")
    while 0 <= start < len(head) - 3:
        byte = head[start + 3]
        if codec == "h264":
            nal, picture = byte & 0x1F, 1 <= byte & 0x1F <= 5
        else:
            nal = (byte >> 1) & 0x3F
            picture = nal < 32
        if picture:
            return nal in _IDR_TYPES[codec]
        start = head.find(b"\x00\x00\x01", start + 3)
    return False


def picture_size(codec: str, keyframe: Buffer) -> tuple[int, int]:
    """The width and height of a keyframe's picture (by decoding it)."""
    av = import_av()
    frame = _picture(av, av.CodecContext.create(codec, "r"), keyframe)
    return int(frame.width), int(frame.height)


def _picture(av: Any, ctx: Any, payload: Buffer) -> Any:
    """The one picture a unit gives (:class:`CodecError` if it gives none or several)."""
    try:
        frames = ctx.decode(av.Packet(bytes(payload)))
    except av.FFmpegError as exc:
        raise CodecError(f"video unit does not decode: {exc}") from None
    if len(frames) != 1:
        raise CodecError(f"video unit gave {len(frames)} pictures, not 1")
    return frames[0]


_UNGAMMA16 = np.round(65535 * (np.arange(256) / 255.0) ** 2).astype(np.uint16)
"""The inverse of :func:`~rgbdcast.codecs.videoenc.gamma8`: 8-bit levels back to 16 bits."""


def _decode_one(
    av: Any, ctx: Any, payload: Buffer, shape: tuple[int, ...], dtype: str
) -> np.ndarray:
    frame = _picture(av, ctx, payload)
    if (frame.height, frame.width) != tuple(shape[:2]):
        raise CodecError(f"video picture is {frame.width}x{frame.height}, header says {shape}")
    if len(shape) == 3:
        image: np.ndarray = frame.to_ndarray(format="bgr24")
        return image
    gray: np.ndarray = frame.to_ndarray(format="gray")
    if np.dtype(dtype).itemsize == 2:
        wide: np.ndarray = _UNGAMMA16[gray]
        return wide
    return gray


class VideoCodec:
    """A video codec in the registry. ``encode`` makes one self-contained keyframe and
    ``decode`` reads one; streams use :meth:`stream_encoder` and :meth:`stream_decoder`."""

    video = True

    def __init__(self, name: str, description: str) -> None:
        kinds = frozenset({StreamKind.color, StreamKind.infrared})
        self.info = CodecInfo(name, kinds, False, description)

    def output_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        return (shape[0], shape[1], 3) if len(shape) == 3 else tuple(shape)

    def stream_encoder(self, params: dict[str, Any]) -> VideoEncoder:
        return VideoEncoder(self.info.name, params)

    def stream_decoder(self) -> VideoDecoder:
        return VideoDecoder(self.info.name)

    def encode(self, data: FrameData, params: dict[str, Any]) -> Buffer:
        assert isinstance(data, np.ndarray)
        encoder = VideoEncoder(self.info.name, {**params, "gop": 1})
        try:
            unit, _key = encoder.encode(data, keyframe=True)
        finally:
            encoder.close()
        return unit

    def decode(self, payload: Buffer, shape: tuple[int, ...], dtype: str) -> FrameData:
        dt = np.dtype(dtype)
        color = len(shape) == 3 and shape[2] == 3 and dt == np.uint8
        if not (color or (len(shape) == 2 and dt in (np.uint8, np.dtype("<u2")))):
            raise CodecError(
                f"{self.info.name} decodes to BGR or gray images, header says {dtype} {shape}"
            )
        if not is_keyframe(self.info.name, payload):
            raise CodecError(
                f"{self.info.name} unit is not a keyframe: it needs the units before it "
                "(subscribe to the stream to decode it)"
            )
        decoder = VideoDecoder(self.info.name)
        try:
            image = decoder.feed(payload, 0, True, shape, dtype)
        finally:
            decoder.close()
        if image is None:  # pragma: no cover - a keyframe always opens the chain
            raise CodecError(f"{self.info.name} unit is not a keyframe")
        return image


register(VideoCodec("h264", "H.264 video (PyAV/FFmpeg): keyframes on request, low latency"))
register(VideoCodec("hevc", "HEVC video (PyAV/FFmpeg): keyframes on request, low latency"))
