"""Pure codecs (no I/O) and their registry: ``get(name)``, ``available(kind)``."""

from . import body, png, raw
from .base import (
    MAX_DECODED_BYTES,
    Codec,
    CodecInfo,
    available,
    check_shape,
    default_codec,
    get,
    register,
)

__all__ = [
    "MAX_DECODED_BYTES",
    "Codec",
    "CodecInfo",
    "available",
    "body",
    "check_shape",
    "default_codec",
    "get",
    "png",
    "raw",
    "register",
]
