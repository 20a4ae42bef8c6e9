"""Encoding from YUY2, a color source's native layout (:mod:`rgbdcast.devices.yuy2` makes such
frames): the ``jpeg`` codec encodes it from its planes (libjpeg-turbo's YUV path: no color
conversion, the chroma only averaged down to 4:2:0 and stretched to JFIF's full range), and video
encoders take it as ``yuyv422`` (libswscale to 4:2:0, no BGR). Other codecs read the BGR pixels.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from ..frames import Encoded
from .base import Buffer
from .grad import _native

__all__ = ["YUY2", "is_yuy2", "yuy2_planes"]

YUY2 = "yuy2"
"""The codec name a YUY2 source frame carries (``rgbdcast.devices.yuy2.YUY2``)."""

_scratch = threading.local()


def is_yuy2(source: Encoded | None) -> bool:
    return source is not None and source.codec == YUY2


def yuy2_planes(
    data: Buffer, width: int, height: int, vsub: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """JFIF (full-range) Y, U and V planes of a YUY2 image, chroma at 4:2:2 (*vsub* 1) or 4:2:0
    (*vsub* 2: each pair of rows averaged). The planes live in a buffer this thread reuses:
    use them before the next call."""
    half, rows = width // 2, height // vsub
    need = width * height + 2 * half * rows
    buf: Any = getattr(_scratch, "buf", None)
    if buf is None or buf.size < need:
        buf = _scratch.buf = np.empty(need, np.uint8)
    if _native is not None:
        _native.yuy2_planes(data, width, height, vsub, buf)
    else:
        w = np.frombuffer(data, np.uint8).reshape(height, half, 4).astype(np.int32)
        y = np.stack([w[..., 0], w[..., 2]], axis=-1).reshape(height, width)
        u, v = w[..., 1], w[..., 3]
        if vsub == 2:
            u, v = (u[0::2] + u[1::2] + 1) >> 1, (v[0::2] + v[1::2] + 1) >> 1
        y = (np.maximum(y - 16, 0) * 149 + 64) >> 7
        u, v = (((c * 146 + 64) >> 7) - 18 for c in (u, v))
        for plane, part in zip(
            (y, u, v),
            np.split(buf[:need], [width * height, width * height + half * rows]),
            strict=True,
        ):
            part[:] = np.clip(plane, 0, 255).reshape(-1)
    size = width * height
    return (
        buf[:size].reshape(height, width),
        buf[size : size + half * rows].reshape(rows, half),
        buf[size + half * rows : need].reshape(rows, half),
    )
