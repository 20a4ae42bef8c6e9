"""``jpeg``: color through libjpeg-turbo (simplejpeg), from BGR or BGRA without conversion.

``params``: ``quality`` (1-100, default 85), ``subsampling`` (``420`` default, ``422``, ``444``),
``strips`` (default 1). With one strip the payload is one standard JPEG. With N > 1 the image is
cut into N bands of whole rows (multiples of 16), encoded and decoded in parallel threads
(libjpeg-turbo releases the GIL), for lower latency on multi-core machines; the payload is then
``b"JPGS"``, ``u8 version (1)``, ``u8 N``, N x ``u32 length`` (little-endian), then the N JPEGs,
top band first. Decodes to BGR. Every JPEG header is checked against the frame header first.
"""

from __future__ import annotations

import os
import struct
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import simplejpeg

from ..errors import CodecError
from ..frames import FrameData, StreamKind
from .base import MAX_DECODED_BYTES, Buffer, CodecInfo, register

__all__ = ["JpegCodec"]

DEFAULT_QUALITY = 85
MAX_STRIPS = 16
_STRIPS_MAGIC = b"JPGS"
_pool: ThreadPoolExecutor | None = None  # process-wide workers, made on first use


def _workers() -> ThreadPoolExecutor:
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(max(2, min(4, os.cpu_count() or 2)), "rgbdcast-pool-jpeg")
    return _pool


_SUBSAMPLING = {"420", "422", "444", "440", "411"}


class JpegCodec:
    info = CodecInfo(
        "jpeg",
        frozenset({StreamKind.color}),
        lossless=False,
        description="JPEG via libjpeg-turbo; quality and chroma subsampling configurable",
    )

    def output_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        return (shape[0], shape[1], 3)

    def encode(self, data: FrameData, params: dict[str, Any]) -> Buffer:
        assert isinstance(data, np.ndarray)
        quality = int(params.get("quality", DEFAULT_QUALITY))
        sub = str(params.get("subsampling", "420"))
        strips = int(params.get("strips", 1))
        if not 1 <= quality <= 100 or sub not in _SUBSAMPLING or not 1 <= strips <= MAX_STRIPS:
            raise CodecError(
                f"bad JPEG settings: quality {quality}, subsampling {sub}, strips {strips}"
            )
        colorspace = "BGRA" if data.shape[2] == 4 else "BGR"

        def one(band: np.ndarray) -> bytes:
            return bytes(
                simplejpeg.encode_jpeg(
                    np.ascontiguousarray(band),
                    quality=quality,
                    colorspace=colorspace,
                    colorsubsampling=sub,
                    fastdct=True,
                )
            )

        if strips == 1:
            return one(data)
        step = ((data.shape[0] + strips - 1) // strips + 15) // 16 * 16  # whole MCU rows
        bands = [data[y : y + step] for y in range(0, data.shape[0], step)]
        jpegs = list(_workers().map(one, bands))
        head = (
            _STRIPS_MAGIC
            + bytes([1, len(jpegs)])
            + b"".join(struct.pack("<I", len(j)) for j in jpegs)
        )
        return head + b"".join(jpegs)

    def decode(self, payload: Buffer, shape: tuple[int, ...], dtype: str) -> FrameData:
        data = bytes(payload)
        if len(shape) != 3 or shape[2] != 3 or dtype != "|u1":
            raise CodecError(f"jpeg decodes to HxWx3 uint8, header says {shape} {dtype}")
        jpegs = _split(data) if data[:4] == _STRIPS_MAGIC else [data]
        heights = []
        for j in jpegs:
            try:
                height, width, _cs, _sub = simplejpeg.decode_jpeg_header(j)
            except ValueError as exc:
                raise CodecError(f"not a JPEG: {exc}") from None
            if width != shape[1]:
                raise CodecError(f"JPEG is {width} wide, header says {shape[1]}")
            heights.append(height)
        if sum(heights) != shape[0] or shape[0] * shape[1] * 3 > MAX_DECODED_BYTES:
            raise CodecError(f"JPEG rows {sum(heights)}, header says {shape[0]}")

        def one(j: bytes) -> np.ndarray:
            try:
                return simplejpeg.decode_jpeg(j, colorspace="BGR", fastdct=True, fastupsample=True)
            except ValueError as exc:
                raise CodecError(f"corrupt JPEG: {exc}") from None

        if len(jpegs) == 1:
            return one(jpegs[0])
        out = np.empty((shape[0], shape[1], 3), np.uint8)
        tops = np.cumsum([0, *heights])

        def place(i: int) -> None:
            out[tops[i] : tops[i + 1]] = one(jpegs[i])

        list(_workers().map(place, range(len(jpegs))))
        return out


def _split(data: bytes) -> list[bytes]:
    if len(data) < 6 or data[4] != 1 or not 1 <= data[5] <= MAX_STRIPS:
        raise CodecError("bad JPEG strips header")
    n = data[5]
    if len(data) < 6 + 4 * n:
        raise CodecError("truncated JPEG strips header")
    lengths = struct.unpack_from(f"<{n}I", data, 6)
    pos, jpegs = 6 + 4 * n, []
    for length in lengths:
        if pos + length > len(data):
            raise CodecError("truncated JPEG strip")
        jpegs.append(data[pos : pos + length])
        pos += length
    if pos != len(data):
        raise CodecError("trailing bytes after the JPEG strips")
    return jpegs


register(JpegCodec())
