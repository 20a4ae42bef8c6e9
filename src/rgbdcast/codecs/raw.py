"""``raw``: the pixels as they are, row-major, little-endian. Zero-copy on both ends."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..errors import CodecError
from ..frames import FrameData, StreamKind
from .base import Buffer, CodecInfo, check_shape, register

__all__ = ["RawCodec"]


class RawCodec:
    info = CodecInfo(
        "raw",
        frozenset({StreamKind.color, StreamKind.depth, StreamKind.infrared}),
        lossless=True,
        description="uncompressed pixels; fastest, largest",
    )

    def encode(self, data: FrameData, params: dict[str, Any]) -> Buffer:
        assert isinstance(data, np.ndarray)
        arr = data if data.dtype.byteorder != ">" else data.astype(data.dtype.newbyteorder("<"))
        return np.ascontiguousarray(arr)

    def decode(self, payload: Buffer, shape: tuple[int, ...], dtype: str) -> FrameData:
        shape, dt = check_shape(shape, dtype)
        expected = math.prod(shape) * dt.itemsize
        size = memoryview(payload).nbytes
        if size != expected:
            raise CodecError(f"raw payload is {size} bytes; shape {shape} {dtype} needs {expected}")
        return np.frombuffer(payload, dtype=dt).reshape(shape)


register(RawCodec())
