"""Pure codecs (no I/O) and their registry: ``get(name)``, ``available(kind)``."""

from . import body, bounded, grad, jpeg, png, raw, video
from .base import (
    MAX_DECODED_BYTES,
    Codec,
    CodecInfo,
    accepts,
    available,
    check_shape,
    default_codec,
    encode_source,
    get,
    output_shape,
    register,
)

__all__ = [
    "MAX_DECODED_BYTES",
    "Codec",
    "CodecInfo",
    "accepts",
    "encode_source",
    "available",
    "body",
    "bounded",
    "grad",
    "jpeg",
    "check_shape",
    "default_codec",
    "get",
    "output_shape",
    "png",
    "raw",
    "register",
    "video",
]
