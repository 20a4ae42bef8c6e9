"""Codecs with a bounded error, for links where lossless depth and infrared are too much:
``qdepth`` (depth) and ``qir`` (infrared). The exact codecs stay the default.

How this works: each value is mapped through a curve to a level, and each level decodes to one
value, so the largest error at every input value is known in advance (:meth:`error_bound`).
- ``qdepth`` follows a time-of-flight sensor's accuracy (Zdepth's bands): exact below 0.75 m,
  then buckets 3, 7, 15 and 31 mm wide from 0.75, 1.5, 3 and 6 m, each decoded to its middle
  value: at most 0, 1, 3, 7 and 15 mm off in those bands, the same bound as Zdepth's.
- ``qir`` keeps infrared as 10 bits after a gamma of 2 (levels at ``65535 * (i / 1023)^2``, each
  value to its nearest): at most ``0.38 * sqrt(v)`` off (8 at 1000, 25 at 10000, 64 at the
  top), finer where the image is dark, as the eye and the sensor's shot noise are.
In both, 0 (no measurement; black) stays 0. The levels are predicted with LOCO-I's median edge
predictor over the image in which 0 pixels take the level to their left, and only the other
pixels' residuals are coded: 4-bit nibbles (with escapes) for zstd, and the pixels that are not 0
as a bit mask. The hot loop is in C (``_native``; these codecs need it, as ``rvl`` does).

Payload: ``u8 version (1)``, ``u8 curve (1: time-of-flight depth, 2: gamma-2 10-bit)``, ``u32
mask bytes``, ``u32 nibble bytes`` (both compressed sizes, little-endian), then zstd frames of
the mask, the nibbles and the escapes (docs/protocol.md).
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

__all__ = ["BANDS", "CurveCodec", "depth_curve", "error_bound", "gamma_curve"]

_VERSION = 1
_HEAD = struct.Struct("<BBII")
CURVE_TOF, CURVE_GAMMA = 1, 2

BANDS = ((0, 1), (750, 3), (1500, 7), (3000, 15), (6000, 31))
"""qdepth's (from mm, bucket width mm): a bucket of width w is off by at most (w - 1) / 2."""


def depth_curve() -> tuple[np.ndarray, np.ndarray]:
    """qdepth's level of every uint16 depth, and the depth each level decodes to."""
    level = np.zeros(65536, np.uint16)
    value: list[int] = []
    ends = [start for start, _ in BANDS[1:]] + [65536]
    for (start, width), end in zip(BANDS, ends, strict=True):
        for lo in range(start, end, width):
            hi = min(lo + width, end)
            level[lo:hi] = len(value)
            value.append((lo + hi - 1) // 2)
    return level, np.array(value, "<u2")


def gamma_curve(bits: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """qir's levels: ``65535 * (i / (2^bits - 1))^2`` (duplicates at the dark end merged), and
    each uint16 value's nearest one."""
    top = (1 << bits) - 1
    value = np.unique(np.round((np.arange(top + 1) / top) ** 2 * 65535).astype(np.int64))
    v = np.arange(65536)
    above = np.clip(np.searchsorted(value, v), 1, len(value) - 1)
    nearest = np.where(v - value[above - 1] <= value[above] - v, above - 1, above)
    return nearest.astype("<u2"), value.astype("<u2")


def error_bound(depth_mm: np.ndarray | int) -> np.ndarray:
    """qdepth's largest error at *depth_mm*: 0 below 0.75 m, then 1, 3, 7, 15 mm."""
    d = np.asarray(depth_mm)
    bound = np.zeros(d.shape, np.uint16)
    for start, width in BANDS:
        bound[d >= start] = (width - 1) // 2
    return bound


class CurveCodec:
    """A curve's levels + median edge prediction + nibbles + zstd (``params``: ``level``, the
    zstd level)."""

    def __init__(
        self,
        info: CodecInfo,
        curve: int,
        tables: tuple[np.ndarray, np.ndarray],
        bound: Any = None,
    ) -> None:
        self.info = info
        self.curve = curve
        self.level, self.value = tables
        if self.level[0] != 0 or self.level[1:].min() == 0:
            raise ValueError("a curve keeps 0 for 0 alone")
        if len(self.value) > 1 << 15:  # the C predictor works in 16-bit signed lanes
            raise ValueError("a curve has at most 32768 levels")
        exact = np.abs(self.value[self.level].astype(np.int64) - np.arange(65536))
        self._bound = bound if bound is not None else (lambda v: exact[np.asarray(v)])

    def error_bound(self, data: np.ndarray) -> np.ndarray:
        """The largest error allowed at each of *data*'s values."""
        return np.asarray(self._bound(data))

    def encode(self, data: FrameData, params: dict[str, Any]) -> Buffer:
        name = self.info.name
        if _native is None:
            raise CodecError(f"{name} needs rgbdcast's C accelerator (reinstall with a compiler)")
        assert isinstance(data, np.ndarray)
        img = np.ascontiguousarray(data, dtype="<u2")
        if img.ndim != 2:
            raise CodecError(f"{name} carries HxW uint16 images, not {img.shape}")
        mask, nibbles, escapes = _native.qdepth_encode(img, self.level, img.shape[1], img.shape[0])
        z = _zstd(int(params.get("level", 1)))
        m, n, e = z.compress(mask), z.compress(nibbles), z.compress(escapes)
        return b"".join((_HEAD.pack(_VERSION, self.curve, len(m), len(n)), m, n, e))

    def decode(self, payload: Buffer, shape: tuple[int, ...], dtype: str) -> FrameData:
        name = self.info.name
        shape, dt = check_shape(shape, dtype)
        if len(shape) != 2 or dt.itemsize != 2:
            raise CodecError(f"{name} carries HxW uint16 images, not {shape} {dtype}")
        if _native is None:
            raise CodecError(f"{name} needs rgbdcast's C accelerator (reinstall with a compiler)")
        buf = memoryview(payload).cast("B")
        if len(buf) < _HEAD.size:
            raise CodecError(f"{name} payload is too short")
        version, curve, m, n = _HEAD.unpack_from(buf)
        if version != _VERSION or curve != self.curve or _HEAD.size + m + n > len(buf):
            raise CodecError(f"{name} payload has a bad version, curve or length")
        height, width = shape
        pixels = width * height
        start = _HEAD.size
        d = _tls.decompressor
        try:
            mask = d.decompress(buf[start : start + m], max_output_size=(pixels + 7) // 8)
            nibbles = d.decompress(buf[start + m : start + m + n], max_output_size=pixels // 2 + 1)
            escapes = d.decompress(buf[start + m + n :], max_output_size=2 * pixels)
            raw = _native.qdepth_decode(mask, nibbles, escapes, self.value, width, height)
        except (zstandard.ZstdError, ValueError) as exc:
            raise CodecError(f"{name} payload is corrupt: {exc}") from None
        return np.frombuffer(raw, "<u2").reshape(height, width)


register(
    CurveCodec(
        CodecInfo(
            "qdepth",
            frozenset({StreamKind.depth}),
            lossless=False,
            description="depth within a time-of-flight sensor's accuracy (exact below 0.75 m, "
            "then within 1/3/7/15 mm from 0.75/1.5/3/6 m), about 2x smaller than grad-zstd",
        ),
        CURVE_TOF,
        depth_curve(),
        error_bound,
    )
)
register(
    CurveCodec(
        CodecInfo(
            "qir",
            frozenset({StreamKind.infrared}),
            lossless=False,
            description="infrared as 10 bits after a gamma of 2: within 0.38*sqrt(value)",
        ),
        CURVE_GAMMA,
        gamma_curve(),
    )
)
