"""``jpeg``: color through libjpeg-turbo (simplejpeg), from BGR or BGRA without conversion.

``params``: ``quality`` (1-100, default 85), ``subsampling`` (``420`` default, ``422``, ``444``).
Decodes to BGR. The JPEG header is checked against the frame header before decoding.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import simplejpeg

from ..errors import CodecError
from ..frames import FrameData, StreamKind
from .base import MAX_DECODED_BYTES, Buffer, CodecInfo, register

__all__ = ["JpegCodec"]

DEFAULT_QUALITY = 85
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
        if not 1 <= quality <= 100 or sub not in _SUBSAMPLING:
            raise CodecError(f"bad JPEG settings: quality {quality}, subsampling {sub}")
        colorspace = "BGRA" if data.shape[2] == 4 else "BGR"
        return simplejpeg.encode_jpeg(
            np.ascontiguousarray(data),
            quality=quality,
            colorspace=colorspace,
            colorsubsampling=sub,
            fastdct=True,
        )

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
        try:
            return simplejpeg.decode_jpeg(data, colorspace="BGR", fastdct=True, fastupsample=True)
        except ValueError as exc:
            raise CodecError(f"corrupt JPEG: {exc}") from None


register(JpegCodec())
