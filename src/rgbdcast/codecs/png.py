"""``png``: lossless PNG (8-bit BGR/BGRA color, 16-bit grayscale depth and infrared).

Written with zlib and numpy only, so that ``rgbdcast save`` and ROS-compatible PNG depth need no
image library. The encoder uses the *Up* filter on every row (vectorised); the decoder reads all
five PNG filter types, so PNGs written by other tools decode too.
"""

from __future__ import annotations

import struct
import zlib
from typing import Any

import numpy as np

from ..errors import CodecError
from ..frames import FrameData, StreamKind
from .base import MAX_DECODED_BYTES, Buffer, CodecInfo, check_shape, register

__all__ = ["PngCodec", "decode_png", "encode_png"]

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_COLOR_TYPES = {1: 0, 3: 2, 4: 6}  # channels -> PNG colour type (gray, RGB, RGBA)
_CHANNELS = {0: 1, 2: 3, 6: 4}


def _chunk(tag: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body))


def encode_png(image: np.ndarray, level: int = 1) -> bytes:
    """Encode an ``HxW`` uint8/uint16 or ``HxWx3/4`` uint8 BGR(A) image as PNG bytes."""
    if image.ndim == 2:
        channels = 1
    elif image.ndim == 3 and image.shape[2] in (3, 4) and image.dtype == np.uint8:
        channels = image.shape[2]
        image = image[:, :, [2, 1, 0, 3][:channels]]  # BGR(A) -> RGB(A)
    else:
        raise CodecError(f"PNG cannot hold an image of shape {image.shape}")
    if image.dtype not in (np.uint8, np.uint16):
        raise CodecError(f"PNG holds uint8 or uint16, not {image.dtype}")
    height, width = image.shape[:2]
    depth = image.dtype.itemsize * 8
    rows = np.ascontiguousarray(image.astype(image.dtype.newbyteorder(">"), copy=False))
    rows = rows.view(np.uint8).reshape(height, -1)
    filtered = np.empty((height, rows.shape[1] + 1), np.uint8)
    filtered[:, 0] = 2  # Up filter
    filtered[0, 1:] = rows[0]
    np.subtract(rows[1:], rows[:-1], out=filtered[1:, 1:])
    ihdr = struct.pack(">IIBBBBB", width, height, depth, _COLOR_TYPES[channels], 0, 0, 0)
    idat = zlib.compress(filtered.tobytes(), level)
    return _SIGNATURE + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def _paeth(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    p = a.astype(np.int16) + b - c
    pa, pb, pc = np.abs(p - a), np.abs(p - b), np.abs(p - c)
    return np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c)).astype(np.uint8)


def _unfilter(data: np.ndarray, height: int, stride: int, bpp: int) -> np.ndarray:
    rows = data.reshape(height, stride + 1)
    out = np.empty((height, stride), np.uint8)
    prev = np.zeros(stride, np.uint8)
    for y in range(height):
        ftype, line = rows[y, 0], rows[y, 1:]
        if ftype == 0:
            cur = line
        elif ftype == 2:
            cur = line + prev
        elif ftype == 1:
            cur = np.cumsum(line.reshape(-1, bpp), axis=0, dtype=np.uint8).reshape(-1)
        elif ftype in (3, 4):
            cur = line.copy()
            for x in range(stride):
                left = int(cur[x - bpp]) if x >= bpp else 0
                up = int(prev[x])
                if ftype == 3:
                    cur[x] = (int(cur[x]) + ((left + up) >> 1)) & 0xFF
                else:
                    ul = int(prev[x - bpp]) if x >= bpp else 0
                    pred = _paeth(np.array([left]), np.array([up]), np.array([ul]))[0]
                    cur[x] = (int(cur[x]) + int(pred)) & 0xFF
        else:
            raise CodecError(f"bad PNG filter type {ftype}")
        out[y] = cur
        prev = out[y]
    return out


def decode_png(payload: Buffer, max_bytes: int = MAX_DECODED_BYTES) -> np.ndarray:
    """Decode PNG bytes to ``HxW`` (gray) or ``HxWx3/4`` BGR(A) uint8/uint16."""
    buf = bytes(payload)
    if not buf.startswith(_SIGNATURE):
        raise CodecError("not a PNG (bad signature)")
    pos, header, idat = 8, None, []
    while pos + 8 <= len(buf):
        (length,) = struct.unpack_from(">I", buf, pos)
        tag = buf[pos + 4 : pos + 8]
        body = buf[pos + 8 : pos + 8 + length]
        if len(body) != length:
            raise CodecError("truncated PNG chunk")
        if tag == b"IHDR":
            if length != 13:
                raise CodecError("bad PNG IHDR")
            header = struct.unpack(">IIBBBBB", body)
        elif tag == b"IDAT":
            idat.append(body)
        elif tag == b"IEND":
            break
        pos += 12 + length
    if header is None or not idat:
        raise CodecError("PNG lacks IHDR or IDAT")
    width, height, depth, ctype, _comp, _filt, interlace = header
    if ctype not in _CHANNELS or depth not in (8, 16) or interlace != 0:
        raise CodecError(f"unsupported PNG (colour type {ctype}, depth {depth}, interlace)")
    channels = _CHANNELS[ctype]
    bpp = channels * depth // 8
    stride = width * bpp
    expected = height * (stride + 1)
    if width == 0 or height == 0 or height * stride > max_bytes:
        raise CodecError("PNG size out of bounds")
    dec = zlib.decompressobj()
    try:
        raw = dec.decompress(b"".join(idat), expected)
    except zlib.error as exc:
        raise CodecError(f"corrupt PNG data: {exc}") from exc
    if len(raw) != expected:
        raise CodecError("PNG data does not match its header")
    pixels = _unfilter(np.frombuffer(raw, np.uint8), height, stride, bpp)
    dtype = np.dtype(">u2") if depth == 16 else np.dtype("u1")
    img = pixels.view(dtype).astype(dtype.newbyteorder("="), copy=False)
    img = img.reshape((height, width) if channels == 1 else (height, width, channels))
    if channels >= 3:
        img = np.ascontiguousarray(img[:, :, [2, 1, 0, 3][:channels]])
    return img


class PngCodec:
    info = CodecInfo(
        "png",
        frozenset({StreamKind.color, StreamKind.depth, StreamKind.infrared}),
        lossless=True,
        description="PNG (zlib); interoperable with ROS compressed image tools",
    )

    def encode(self, data: FrameData, params: dict[str, Any]) -> Buffer:
        assert isinstance(data, np.ndarray)
        return encode_png(data, int(params.get("level", 1)))

    def decode(self, payload: Buffer, shape: tuple[int, ...], dtype: str) -> FrameData:
        shape, dt = check_shape(shape, dtype)
        img = decode_png(payload, int(np.prod(shape)) * dt.itemsize)
        if img.shape != shape or img.dtype.itemsize != dt.itemsize:
            raise CodecError(f"PNG is {img.shape} {img.dtype}; header said {shape} {dtype}")
        return img


register(PngCodec())
