"""Lossless uint16 codecs built on a planar predictor: ``grad-zstd`` (the default for depth and
infrared), ``grad-zstd-max`` (slow links), ``grad-lz4`` (fastest), plus ``rvl``.

How this works: each pixel is replaced by its prediction error against ``left + up - upleft``
(mod 2^16), zigzagged so small errors of either sign become small numbers, and split into a plane
of low bytes and a plane of high bytes (nearly all zero). zstd or lz4 then squeezes the planes.
Invalid (zero) pixels need no special case: their edges cost a few large residuals, which the
entropy coder absorbs. The transform runs in C (``_native``) where it was built and in numpy
otherwise; both produce the same bytes.

Payload: ``u8 version (1)``, ``u8 backend (1 zstd, 2 lz4)``, then the compressed planes
(``2 * H * W`` bytes once decompressed: H*W low bytes, then H*W high bytes).
"""

from __future__ import annotations

import threading
from typing import Any

import lz4.block
import numpy as np
import zstandard

from ..errors import CodecError
from ..frames import FrameData, StreamKind
from .base import Buffer, CodecInfo, check_shape, register

_native: Any
try:
    from . import _native
except ImportError:  # no compiler at install time: the numpy path gives the same bytes
    _native = None

__all__ = ["GradCodec", "RvlCodec", "grad_planes", "grad_unplanes", "native_available"]

_VERSION = 1
_ZSTD, _LZ4 = 1, 2
UINT16_KINDS = frozenset({StreamKind.depth, StreamKind.infrared})


def native_available() -> bool:
    """True when the C accelerator was built."""
    return _native is not None


def _np_planes(img: np.ndarray) -> bytes:
    v = np.empty_like(img)
    v[0] = img[0]
    np.subtract(img[1:], img[:-1], out=v[1:])
    r = np.empty_like(img)
    r[:, 0] = v[:, 0]
    np.subtract(v[:, 1:], v[:, :-1], out=r[:, 1:])
    s = r.view(np.int16)
    z = np.left_shift(s, 1)
    np.bitwise_xor(z, np.right_shift(s, 15), out=z)
    b = z.view(np.uint8).reshape(-1, 2)
    out = np.empty((2, b.shape[0]), np.uint8)
    out[0], out[1] = b[:, 0], b[:, 1]
    return out.tobytes()


def _np_unplanes(planes: bytes, width: int, height: int) -> np.ndarray:
    b = np.frombuffer(planes, np.uint8).reshape(2, width * height)
    z = (b[0].astype(np.uint16) | (b[1].astype(np.uint16) << 8)).reshape(height, width)
    r = np.right_shift(z, 1)
    np.bitwise_xor(r, (-(z & 1).view(np.int16)).view(np.uint16), out=r)
    return np.cumsum(np.cumsum(r, axis=1, dtype=np.uint16), axis=0, dtype=np.uint16)


def grad_planes(img: np.ndarray) -> bytes:
    """The residual byte planes of an ``HxW`` uint16 image."""
    img = np.ascontiguousarray(img, dtype="<u2")
    if _native is not None:
        return bytes(_native.grad_encode(img, img.shape[1], img.shape[0]))
    return _np_planes(img)


def grad_unplanes(planes: bytes, width: int, height: int) -> np.ndarray:
    """Inverse of :func:`grad_planes`."""
    if len(planes) != 2 * width * height:
        raise CodecError("residual planes do not match the image size")
    if _native is not None:
        return np.frombuffer(_native.grad_decode(planes, width, height), "<u2").reshape(
            height, width
        )
    return _np_unplanes(planes, width, height)


class _PerThread(threading.local):
    """zstd (de)compressor objects must not be shared between threads."""

    def __init__(self) -> None:
        self.compressors: dict[int, zstandard.ZstdCompressor] = {}
        self.decompressor = zstandard.ZstdDecompressor()


_tls = _PerThread()


def _zstd(level: int) -> zstandard.ZstdCompressor:
    c = _tls.compressors.get(level)
    if c is None:
        c = _tls.compressors[level] = zstandard.ZstdCompressor(level=level)
    return c


class GradCodec:
    """Planar prediction + byte planes + zstd or lz4. ``params``: ``level`` (zstd level)."""

    def __init__(self, name: str, backend: int, level: int, description: str) -> None:
        self.info = CodecInfo(name, UINT16_KINDS, lossless=True, description=description)
        self.backend = backend
        self.level = level

    def encode(self, data: FrameData, params: dict[str, Any]) -> Buffer:
        assert isinstance(data, np.ndarray)
        planes = grad_planes(data)
        if self.backend == _ZSTD:
            body = _zstd(int(params.get("level", self.level))).compress(planes)
        else:
            body = lz4.block.compress(planes, store_size=False)
        return bytes([_VERSION, self.backend]) + body

    def decode(self, payload: Buffer, shape: tuple[int, ...], dtype: str) -> FrameData:
        shape, dt = check_shape(shape, dtype)
        if len(shape) != 2 or dt.itemsize != 2:
            raise CodecError(f"{self.info.name} carries HxW uint16 images, not {shape} {dtype}")
        buf = memoryview(payload).cast("B")
        if len(buf) < 2 or buf[0] != _VERSION or buf[1] not in (_ZSTD, _LZ4):
            raise CodecError(f"{self.info.name} payload has a bad version or backend byte")
        height, width = shape
        size = 2 * width * height
        try:
            if buf[1] == _ZSTD:
                planes = _tls.decompressor.decompress(buf[2:], max_output_size=size)
            else:
                planes = lz4.block.decompress(buf[2:], uncompressed_size=size)
        except (zstandard.ZstdError, lz4.block.LZ4BlockError) as exc:
            raise CodecError(f"{self.info.name} payload is corrupt: {exc}") from None
        return grad_unplanes(planes, width, height)


class RvlCodec:
    """RVL (Wilson 2017), full uint16 range; needs the C accelerator."""

    info = CodecInfo(
        "rvl",
        UINT16_KINDS,
        lossless=True,
        description="RVL run-length/variable-length coding (needs the built C accelerator)",
    )

    def encode(self, data: FrameData, params: dict[str, Any]) -> Buffer:
        if _native is None:
            raise CodecError(
                "the rvl codec needs rgbdcast's C accelerator (reinstall with a compiler)"
            )
        assert isinstance(data, np.ndarray)
        return bytes(_native.rvl_encode(np.ascontiguousarray(data, dtype="<u2")))

    def decode(self, payload: Buffer, shape: tuple[int, ...], dtype: str) -> FrameData:
        shape, dt = check_shape(shape, dtype)
        if _native is None:
            raise CodecError(
                "the rvl codec needs rgbdcast's C accelerator (reinstall with a compiler)"
            )
        if len(shape) != 2 or dt.itemsize != 2:
            raise CodecError(f"rvl carries HxW uint16 images, not {shape} {dtype}")
        try:
            raw = _native.rvl_decode(bytes(payload), shape[0] * shape[1])
        except ValueError as exc:
            raise CodecError(str(exc)) from None
        return np.frombuffer(raw, "<u2").reshape(shape)


register(GradCodec("grad-zstd", _ZSTD, 1, "planar prediction + zstd 1: the default, lossless"))
register(GradCodec("grad-zstd-max", _ZSTD, 6, "planar prediction + zstd 6: smallest at 30 fps"))
register(GradCodec("grad-lz4", _LZ4, 0, "planar prediction + lz4: fastest lossless"))
register(RvlCodec())
