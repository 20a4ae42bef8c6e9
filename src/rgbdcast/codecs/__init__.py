"""Pure codecs (no I/O) and their registry: ``get(name)``, ``available(kind)``."""

from . import body, grad, jpeg, png, quantdepth, raw
from .base import (
    MAX_DECODED_BYTES,
    Codec,
    CodecInfo,
    accepts,
    available,
    check_shape,
    default_codec,
    get,
    output_shape,
    register,
)

__all__ = [
    "MAX_DECODED_BYTES",
    "Codec",
    "CodecInfo",
    "accepts",
    "available",
    "body",
    "grad",
    "jpeg",
    "check_shape",
    "default_codec",
    "get",
    "output_shape",
    "png",
    "quantdepth",
    "raw",
    "register",
]
