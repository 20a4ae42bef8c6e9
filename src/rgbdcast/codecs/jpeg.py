"""``jpeg``: color through libjpeg-turbo (simplejpeg), from BGR or BGRA without conversion, or
from a YUY2 source's planes (:mod:`.yuv`: no color conversion at all; 4:2:0 or 4:2:2).

``params``: ``quality`` (1-100, default 85), ``subsampling`` (``420`` default, ``422``, ``444``),
``strips`` (default 2 for a megapixel or more on a multi-core machine, else 1: ``auto_strips``).
The payload is always one standard JPEG. With N > 1 strips the image is cut into N bands of
whole MCU rows, encoded at once on several CPUs (libjpeg-turbo releases the GIL; ``workers``)
and joined into one JPEG with a restart interval per band (``jpegrst``); any decoder reads it,
and this one decodes such a JPEG's bands in parallel into one array, for lower latency on
multi-core machines. Decodes to BGR. Every JPEG header is checked against the frame header first.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import simplejpeg

from ..errors import CodecError
from ..frames import Encoded, FrameData, StreamKind
from .base import MAX_DECODED_BYTES, Buffer, CodecInfo, register
from .jpegrst import join_bands, split_bands
from .workers import run_parts
from .yuv import is_yuy2, yuy2_planes

__all__ = ["JpegCodec", "auto_strips"]

DEFAULT_QUALITY = 85
MAX_STRIPS = 16
AUTO_STRIPS_PIXELS = 1_000_000


def auto_strips(height: int, width: int) -> int:
    """Strips when none are asked for: 2 for images of a megapixel or more on a machine with
    two cores or more (about 40% less encode and decode time for 1080p here), else 1."""
    return 2 if height * width >= AUTO_STRIPS_PIXELS and (os.cpu_count() or 1) >= 2 else 1


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
        quality, sub, strips = _settings(params, data.shape[0], data.shape[1])
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

        step = _band_rows(data.shape[0], sub, strips)
        if step >= data.shape[0]:
            return one(data)
        bands = [data[y : y + step] for y in range(0, data.shape[0], step)]
        return join_bands(run_parts(one, bands), step)

    def encode_source(self, source: Encoded, params: dict[str, Any]) -> Buffer | None:
        """The JPEG of a YUY2 source, from its planes (None if it is not one, or the settings
        want chroma it does not have: 4:4:4)."""
        height, width = source.shape[:2]
        quality, sub, strips = _settings(params, height, width)
        if not is_yuy2(source) or sub not in ("420", "422") or (sub == "420" and height % 2):
            return None
        vsub = 2 if sub == "420" else 1
        raw = memoryview(source.payload)

        def one(rows: tuple[int, int]) -> bytes:
            top, bottom = rows
            y, u, v = yuy2_planes(
                raw[top * width * 2 : bottom * width * 2], width, bottom - top, vsub
            )
            return bytes(simplejpeg.encode_jpeg_yuv_planes(y, u, v, quality, fastdct=True))

        step = _band_rows(height, sub, strips)
        if step >= height:
            return one((0, height))
        bands = [(y, min(y + step, height)) for y in range(0, height, step)]
        return join_bands(run_parts(one, bands), step)

    def accepts(self, payload: Buffer, shape: tuple[int, ...]) -> bool:
        """A source's JPEG can go out as it is if it is one baseline or progressive JPEG of
        *shape* (its header says so; a grey or CMYK JPEG is not what clients expect)."""
        try:
            height, width, cs, _sub = simplejpeg.decode_jpeg_header(bytes(payload))
        except ValueError:
            return False
        return cs == "YCbCr" and tuple(shape) == (height, width, 3)

    def decode(self, payload: Buffer, shape: tuple[int, ...], dtype: str) -> FrameData:
        data = bytes(payload)
        if len(shape) != 3 or shape[2] != 3 or dtype != "|u1":
            raise CodecError(f"jpeg decodes to HxWx3 uint8, header says {shape} {dtype}")
        try:
            height, width, _cs, _sub = simplejpeg.decode_jpeg_header(data)
        except ValueError as exc:
            raise CodecError(f"not a JPEG: {exc}") from None
        if (height, width) != tuple(shape[:2]) or height * width * 3 > MAX_DECODED_BYTES:
            raise CodecError(f"JPEG is {width}x{height}, header says {shape[1]}x{shape[0]}")
        bands = split_bands(data, MAX_STRIPS)
        out = np.empty((height, width, 3), np.uint8)
        if bands is None:
            _decode_into((data, out))
            return out
        rows = [top for top, _ in bands] + [height]
        jobs = [(j, out[rows[i] : rows[i + 1]]) for i, (_, j) in enumerate(bands)]
        run_parts(_decode_into, jobs)
        return out


def _settings(params: dict[str, Any], height: int, width: int) -> tuple[int, str, int]:
    quality = int(params.get("quality", DEFAULT_QUALITY))
    sub = str(params.get("subsampling", "420"))
    strips = int(params.get("strips", auto_strips(height, width)))
    if not 1 <= quality <= 100 or sub not in _SUBSAMPLING or not 1 <= strips <= MAX_STRIPS:
        raise CodecError(
            f"bad JPEG settings: quality {quality}, subsampling {sub}, strips {strips}"
        )
    return quality, sub, strips


def _band_rows(height: int, sub: str, strips: int) -> int:
    """Rows per band for *strips* bands of whole MCU rows (the height itself for one band)."""
    if strips == 1:
        return height
    mcu = 16 if sub in ("420", "440") else 8
    step = -(-height // strips)
    return -(-step // mcu) * mcu


def _decode_into(job: tuple[bytes, np.ndarray]) -> None:
    jpeg, out = job
    try:
        simplejpeg.decode_jpeg(jpeg, colorspace="BGR", fastdct=True, fastupsample=True, buffer=out)
    except ValueError as exc:
        raise CodecError(f"corrupt JPEG: {exc}") from None


register(JpegCodec())
