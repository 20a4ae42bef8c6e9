"""``qdepth``: depth with a bounded error, for links where lossless depth is too much.

How this works: each depth value is quantized to a level of a curve that follows a
time-of-flight sensor's accuracy (Zdepth's bands): exact below 0.75 m, then buckets 3, 7, 15 and
31 mm wide from 0.75, 1.5, 3 and 6 m, each decoded to its middle value. The error is therefore
at most 0, 1, 3, 7 and 15 mm in those bands (:func:`error_bound`), the same bound as Zdepth's,
and a pixel without a measurement (0) stays 0. The levels are then predicted with LOCO-I's median
edge predictor over the image in which unmeasured pixels take the level to their left, and only
the measured pixels' residuals are coded: 4-bit nibbles (with escapes) for zstd, and the
measured pixels as a bit mask. The hot loop is in C (``_native``; the codec needs it, as ``rvl``
does). The exact codecs stay the default.

Payload: ``u8 version (1)``, ``u8 curve (1: time-of-flight)``, ``u32 mask bytes``, ``u32 nibble
bytes`` (both compressed sizes, little-endian), then zstd frames of the mask, the nibbles and the
escapes.
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np
import zstandard

from ..errors import CodecError
from ..frames import FrameData, StreamKind
from .base import Buffer, CodecInfo, check_shape, register
from .grad import _native, _tls, _zstd

__all__ = ["BANDS", "QuantDepthCodec", "error_bound", "levels"]

_VERSION, _CURVE_TOF = 1, 1
_HEAD = struct.Struct("<BBII")

BANDS = ((0, 1), (750, 3), (1500, 7), (3000, 15), (6000, 31))
"""(from mm, bucket width mm): a bucket of width w is off by at most (w - 1) / 2."""


def _curve() -> tuple[np.ndarray, np.ndarray]:
    """The level of every uint16 depth, and the depth each level decodes to."""
    level = np.zeros(65536, np.uint16)
    value: list[int] = []
    ends = [start for start, _ in BANDS[1:]] + [65536]
    for (start, width), end in zip(BANDS, ends, strict=True):
        for lo in range(start, end, width):
            hi = min(lo + width, end)
            level[lo:hi] = len(value)
            value.append((lo + hi - 1) // 2)
    return level, np.array(value, "<u2")


_LEVEL, _VALUE = _curve()


def levels() -> int:
    """How many levels the curve has (0 is "no measurement")."""
    return len(_VALUE)


def error_bound(depth_mm: np.ndarray | int) -> np.ndarray:
    """The largest error qdepth may make at *depth_mm*: 0 below 0.75 m, then 1, 3, 7, 15 mm."""
    d = np.asarray(depth_mm)
    bound = np.zeros(d.shape, np.uint16)
    for start, width in BANDS:
        bound[d >= start] = (width - 1) // 2
    return bound


class QuantDepthCodec:
    """Sensor-accuracy quantization + median edge prediction + nibbles + zstd (``level``)."""

    info = CodecInfo(
        "qdepth",
        frozenset({StreamKind.depth}),
        lossless=False,
        description="depth within a time-of-flight sensor's accuracy (exact below 0.75 m, "
        "then within 1/3/7/15 mm from 0.75/1.5/3/6 m), about 2x smaller than grad-zstd",
    )

    def error_bound(self, depth_mm: np.ndarray) -> np.ndarray:
        """The largest error allowed at each of *depth_mm*'s pixels (:func:`error_bound`)."""
        return error_bound(depth_mm)

    def encode(self, data: FrameData, params: dict[str, Any]) -> Buffer:
        if _native is None:
            raise CodecError("qdepth needs rgbdcast's C accelerator (reinstall with a compiler)")
        assert isinstance(data, np.ndarray)
        img = np.ascontiguousarray(data, dtype="<u2")
        if img.ndim != 2:
            raise CodecError(f"qdepth carries HxW depth images, not {img.shape}")
        mask, nibbles, escapes = _native.qdepth_encode(img, _LEVEL, img.shape[1], img.shape[0])
        z = _zstd(int(params.get("level", 1)))
        m, n, e = z.compress(mask), z.compress(nibbles), z.compress(escapes)
        return b"".join((_HEAD.pack(_VERSION, _CURVE_TOF, len(m), len(n)), m, n, e))

    def decode(self, payload: Buffer, shape: tuple[int, ...], dtype: str) -> FrameData:
        shape, dt = check_shape(shape, dtype)
        if len(shape) != 2 or dt.itemsize != 2:
            raise CodecError(f"qdepth carries HxW uint16 images, not {shape} {dtype}")
        if _native is None:
            raise CodecError("qdepth needs rgbdcast's C accelerator (reinstall with a compiler)")
        buf = memoryview(payload).cast("B")
        if len(buf) < _HEAD.size:
            raise CodecError("qdepth payload is too short")
        version, curve, m, n = _HEAD.unpack_from(buf)
        if version != _VERSION or curve != _CURVE_TOF or _HEAD.size + m + n > len(buf):
            raise CodecError("qdepth payload has a bad version, curve or length")
        height, width = shape
        pixels = width * height
        parts = (buf[_HEAD.size : _HEAD.size + m], buf[_HEAD.size + m : _HEAD.size + m + n])
        d = _tls.decompressor
        try:
            mask = d.decompress(parts[0], max_output_size=(pixels + 7) // 8)
            nibbles = d.decompress(parts[1], max_output_size=(pixels + 1) // 2)
            escapes = d.decompress(buf[_HEAD.size + m + n :], max_output_size=2 * pixels)
            raw = _native.qdepth_decode(mask, nibbles, escapes, _VALUE, width, height)
        except (zstandard.ZstdError, ValueError) as exc:
            raise CodecError(f"qdepth payload is corrupt: {exc}") from None
        return np.frombuffer(raw, "<u2").reshape(height, width)


register(QuantDepthCodec())
