"""The codec interface and registry.

A codec turns the data of a :class:`~rgbdcast.frames.Frame` into payload bytes and back. Codecs are
pure: no sockets, no threads, no global state but the registry. ``decode`` gets the shape and dtype
the frame header announced and must check that the payload agrees with them (never trust a peer).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from ..errors import CodecError, UsageError
from ..frames import Encoded, FrameData, StreamKind

__all__ = [
    "MAX_DECODED_BYTES",
    "Buffer",
    "Codec",
    "CodecInfo",
    "accepts",
    "encode_source",
    "available",
    "check_shape",
    "default_codec",
    "get",
    "output_shape",
    "register",
]

MAX_DECODED_BYTES = 8192 * 8192 * 4
"""No payload may decode to more than this many bytes (no decompression bombs)."""

Buffer = Any  # bytes, bytearray, memoryview or a C-contiguous numpy array


@dataclass(frozen=True, slots=True)
class CodecInfo:
    """What a codec is: its wire name, the stream kinds it can carry, and whether it is lossless."""

    name: str
    kinds: frozenset[StreamKind]
    lossless: bool
    description: str


class Codec(Protocol):
    info: CodecInfo

    def encode(self, data: FrameData, params: dict[str, Any]) -> Buffer:
        """Encode frame data to a payload (may return the array itself when nothing is to do)."""

    def decode(self, payload: Buffer, shape: tuple[int, ...], dtype: str) -> FrameData:
        """Decode a payload; raise :class:`CodecError` when it does not match shape and dtype."""


_REGISTRY: dict[str, Codec] = {}

_DEFAULTS = {
    StreamKind.color: "jpeg",
    StreamKind.depth: "grad-zstd",
    StreamKind.infrared: "grad-zstd",
    StreamKind.body: "body",
}


def register(codec: Codec) -> Codec:
    """Add a codec to the registry under ``codec.info.name``."""
    _REGISTRY[codec.info.name] = codec
    return codec


def get(name: str, kind: StreamKind | None = None) -> Codec:
    """The codec called *name*; :class:`UsageError` if unknown or unfit for *kind*."""
    try:
        codec = _REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY))
        raise UsageError(f"unknown codec {name!r} (known: {known})") from None
    if kind is not None and kind not in codec.info.kinds:
        fits = ", ".join(sorted(n for n, c in _REGISTRY.items() if kind in c.info.kinds))
        raise UsageError(f"codec {name!r} cannot carry {kind} frames (use one of: {fits})")
    return codec


def available(kind: StreamKind | None = None) -> list[CodecInfo]:
    """The registered codecs (for *kind* only, if given)."""
    return [c.info for c in _REGISTRY.values() if kind is None or kind in c.info.kinds]


def default_codec(kind: StreamKind) -> str:
    return _DEFAULTS[kind]


def output_shape(codec: Codec, shape: tuple[int, ...]) -> tuple[int, ...]:
    """The shape a payload of *codec* decodes to (JPEG turns BGRA into BGR)."""
    fn = getattr(codec, "output_shape", None)
    return tuple(fn(shape)) if fn is not None else shape


def encode_source(codec: Codec, source: Encoded | None, params: dict[str, Any]) -> Buffer | None:
    """*codec*'s payload made straight from *source*, an image in its source's own layout
    (``jpeg`` from YUY2), or None where the codec needs the decoded pixels."""
    fn = getattr(codec, "encode_source", None)
    return fn(source, params) if fn is not None and source is not None else None


def accepts(codec: Codec, source: Encoded) -> bool:
    """Whether *source*, an image as its source encoded it, is a valid *codec* payload of its
    announced shape that can be sent as it is: the same codec, and a quick header check
    (codecs without an ``accepts`` method vouch for none)."""
    fn = getattr(codec, "accepts", None)
    if fn is None or source.codec != codec.info.name:
        return False
    return bool(fn(source.payload, source.shape))


def check_shape(shape: tuple[int, ...], dtype: str) -> tuple[tuple[int, ...], np.dtype[Any]]:
    """Validate an announced image shape and dtype; return them with the decoded byte size bound."""
    try:
        return _checked_shape(tuple(shape), dtype)
    except TypeError:  # unhashable parts: not a shape anyway; let the checks say why
        return _check_shape(tuple(shape), dtype)


def _check_shape(shape: tuple[int, ...], dtype: str) -> tuple[tuple[int, ...], np.dtype[Any]]:
    try:
        dt = np.dtype(dtype)
    except TypeError as exc:
        raise CodecError(f"unknown dtype {dtype!r}") from exc
    if dt not in (np.dtype("u1"), np.dtype("<u2"), np.dtype(">u2")):
        raise CodecError(f"unsupported dtype {dtype!r}")
    if not 2 <= len(shape) <= 3 or any((not isinstance(s, int)) or s <= 0 for s in shape):
        raise CodecError(f"bad shape {shape!r}")
    if len(shape) == 3 and shape[2] not in (1, 3, 4):
        raise CodecError(f"bad channel count in shape {shape!r}")
    if math.prod(shape) * dt.itemsize > MAX_DECODED_BYTES:
        raise CodecError(f"shape {shape!r} exceeds the decoded size limit")
    return shape, dt


# Every frame of a stream announces the same shape: check it once (errors are not cached).
_checked_shape = functools.lru_cache(maxsize=256)(_check_shape)
