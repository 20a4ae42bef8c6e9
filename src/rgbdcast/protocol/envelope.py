"""The frame envelope: how one encoded frame travels on a data endpoint (sans-I/O).

How this works: a frame is one ZeroMQ multipart message of two frames, ``[header, payload]``.
The header is the 5 bytes ``b"RGBD\\x01"`` (magic and envelope version) followed by a UTF-8 JSON
object (see ``docs/protocol.md``); the payload is the codec's output, sent without copying.
:func:`build_header` makes the header for an encoded frame; :func:`parse_header` checks one from
the network and :func:`decode_frame` turns both parts back into a :class:`Frame`.
"""

from __future__ import annotations

import copy
import functools
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .. import codecs
from ..errors import CodecError, ProtocolError
from ..frames import Encoded, Frame, Intrinsics, StreamKind

__all__ = [
    "ENVELOPE_VERSION",
    "MAGIC",
    "MAX_HEADER_BYTES",
    "FrameHeader",
    "build_header",
    "decode_frame",
    "frame_from_header",
    "parse_header",
]

MAGIC = b"RGBD"
ENVELOPE_VERSION = 1
MAX_HEADER_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class FrameHeader:
    """The decoded header of one frame message."""

    device_id: str
    stream: StreamKind
    seq: int
    device_time_ns: int
    host_time_ns: int
    send_time_ns: int
    frameset_id: int
    shape: tuple[int, ...]
    dtype: str
    codec: str
    units: str
    size: int
    intrinsics: dict[str, Any] | None = None
    calib: str | None = None
    """The revision of the device's calibration (``Calibration.revision``), if it has one."""
    au: int | None = None
    """Video codecs: the access unit's number in its encoder's chain (a gap means a lost unit)."""
    key: bool = False
    """Video codecs: the unit is a keyframe (decodable without the units before it)."""


def build_header(
    frame: Frame,
    codec: str,
    size: int,
    send_time_ns: int,
    shape: tuple[int, ...] | None = None,
    crc: int | None = None,
    calib: str | None = None,
    video: tuple[int, bool] | None = None,
) -> bytes:
    """The header part for *frame* encoded with *codec* into *size* payload bytes.

    *shape* is what the payload decodes to, when the codec changes it (JPEG from BGRA is BGR).
    *crc* (test mode, ``serve --checksums``) is the CRC-32 of the payload, for receivers to
    check that what arrived is what was sent. *calib* is the revision of the device's
    calibration, so that a receiver knows when to fetch a new one. *video* is a video unit's
    number in its chain and whether it is a keyframe.
    """
    template = _header_template(
        frame.device_id,
        frame.kind.value,
        tuple(shape if shape is not None else frame.shape),
        frame.dtype,
        codec,
        frame.units,
        frame.intrinsics,
        calib,
    )
    text = template % (
        frame.seq,
        frame.device_time_ns,
        frame.host_time_ns,
        send_time_ns,
        frame.frameset_id,
        size,
    )
    if crc is not None:
        text += f',"crc":{int(crc)}'
    if video is not None:
        text += f',"au":{int(video[0])},"key":{"true" if video[1] else "false"}'
    return _PREFIX + (text + "}").encode()


_PREFIX = MAGIC + bytes([ENVELOPE_VERSION])


@functools.lru_cache(maxsize=256)
def _header_template(
    device: str,
    stream: str,
    shape: tuple[int, ...],
    dtype: str,
    codec: str,
    units: str,
    intrinsics: Intrinsics | None,
    calib: str | None,
) -> str:
    """The JSON of a header with ``%d`` where the per-frame integers go: what stays the same
    for every frame of a stream is serialized once, not per frame (ASCII, like json.dumps)."""

    def js(value: Any) -> str:
        return json.dumps(value, separators=(",", ":")).replace("%", "%%")

    text = (
        f'{{"device":{js(device)},"stream":{js(stream)},"seq":%d,"t_device":%d,"t_host":%d,'
        f'"t_send":%d,"frameset":%d,"shape":{js(list(shape))},"dtype":{js(dtype)},'
        f'"codec":{js(codec)},"units":{js(units)},"size":%d'
    )
    if intrinsics is not None:
        text += f',"intrinsics":{js(intrinsics.to_dict())}'
    if calib is not None:
        text += f',"calib":{js(calib)}'
    return text


_INT_FIELDS = ("seq", "t_device", "t_host", "t_send", "frameset", "size")


def parse_header(raw: bytes | memoryview) -> FrameHeader:
    """Parse and validate a header part; :class:`ProtocolError` if it is not one we understand."""
    raw = bytes(raw)
    if len(raw) > MAX_HEADER_BYTES:
        raise ProtocolError(f"frame header of {len(raw)} bytes exceeds {MAX_HEADER_BYTES}")
    if raw[:4] != MAGIC:
        raise ProtocolError("not an rgbdcast frame (bad magic)")
    if len(raw) < 5 or raw[4] != ENVELOPE_VERSION:
        raise ProtocolError(f"unsupported envelope version {raw[4] if len(raw) > 4 else None}")
    try:
        f = json.loads(raw[5:].decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ProtocolError(f"frame header is not JSON: {exc}") from None
    if not isinstance(f, dict):
        raise ProtocolError("frame header must be a JSON object")
    try:
        for name in _INT_FIELDS:  # JSON gives exact ints; type() also rejects true/false
            value = f[name]
            if type(value) is not int or value < 0:
                raise ProtocolError(f"frame header field {name!r} must be a non-negative integer")
        shape = f["shape"]
        if type(shape) is not list or any(type(s) is not int or s < 0 for s in shape):
            raise ProtocolError("frame header field 'shape' must be a list of integers")
        intr = f.get("intrinsics")
        if intr is not None and not isinstance(intr, dict):
            raise ProtocolError("frame header field 'intrinsics' must be an object")
        for name in ("device", "dtype", "codec", "units"):
            if not isinstance(f[name], str):
                raise ProtocolError(f"frame header field {name!r} must be a string")
        calib = f.get("calib")
        if calib is not None and (not isinstance(calib, str) or len(calib) > 64):
            raise ProtocolError("frame header field 'calib' must be a short string")
        au, key = f.get("au"), f.get("key", False)
        if au is not None and (type(au) is not int or au < 0):
            raise ProtocolError("frame header field 'au' must be a non-negative integer")
        if type(key) is not bool:
            raise ProtocolError("frame header field 'key' must be true or false")
        return FrameHeader(
            device_id=f["device"],
            stream=StreamKind(f["stream"]),
            seq=f["seq"],
            device_time_ns=f["t_device"],
            host_time_ns=f["t_host"],
            send_time_ns=f["t_send"],
            frameset_id=f["frameset"],
            shape=tuple(shape),
            dtype=f["dtype"],
            codec=f["codec"],
            units=f["units"],
            size=f["size"],
            intrinsics=intr,
            calib=calib,
            au=au,
            key=key,
        )
    except KeyError as exc:
        raise ProtocolError(f"frame header lacks field {exc}") from None
    except ValueError as exc:
        raise ProtocolError(f"bad frame header: {exc}") from None


def decode_frame(parts: Sequence[Any]) -> tuple[FrameHeader, Frame]:
    """Decode the parts of one frame message; :class:`ProtocolError` for anything malformed."""
    encoded = parse_encoded(parts)
    return encoded.header, decode_parts(encoded.header, encoded.payload)


def decode_parts(header: FrameHeader, payload: Any) -> Frame:
    """Decode a payload whose header was already checked by :func:`parse_encoded`."""
    try:
        codec = codecs.get(header.codec, header.stream)
    except ValueError as exc:
        raise ProtocolError(str(exc)) from None
    try:
        data = codec.decode(payload, header.shape, header.dtype)
    except CodecError:
        raise
    except Exception as exc:  # any codec failure on foreign bytes is a protocol error
        raise CodecError(f"{header.codec} payload could not be decoded: {exc}") from exc
    return frame_from_header(header, data)


def frame_from_header(header: FrameHeader, data: Any) -> Frame:
    """The :class:`Frame` of a checked header and its decoded data (a video stream's decoder
    decodes on its own, in order)."""
    intrinsics = None
    if header.intrinsics is not None:
        intrinsics = _intrinsics(header)
    try:
        return Frame(
            device_id=header.device_id,
            kind=header.stream,
            seq=header.seq,
            data=data,
            device_time_ns=header.device_time_ns,
            host_time_ns=header.host_time_ns,
            frameset_id=header.frameset_id,
            units=header.units,
            intrinsics=intrinsics,
            calibration=header.calib,
        )
    except ValueError as exc:
        raise ProtocolError(f"frame does not match its header: {exc}") from None


_INTRINSICS: dict[tuple[str, StreamKind], tuple[dict[str, Any], Intrinsics]] = {}
"""The last intrinsics read per device stream: they seldom change, so equal ones are reused."""


def _intrinsics(header: FrameHeader) -> Intrinsics:
    assert header.intrinsics is not None
    key = (header.device_id, header.stream)
    last = _INTRINSICS.get(key)
    if last is not None and last[0] == header.intrinsics:
        return last[1]
    try:
        intrinsics = Intrinsics.from_dict(header.intrinsics)
    except ValueError as exc:
        raise ProtocolError(str(exc)) from None
    if len(_INTRINSICS) >= 256:  # bounded: many devices come and go
        _INTRINSICS.clear()
    _INTRINSICS[key] = (copy.deepcopy(header.intrinsics), intrinsics)  # callers may mutate theirs
    return intrinsics


@dataclass(frozen=True, slots=True)
class EncodedFrame:
    """A frame as it travelled: its checked header and its payload, not decoded.

    What a subscription made with ``decode=False`` yields (for forwarding and recording);
    :meth:`decode` turns it into a :class:`Frame`.
    """

    header: FrameHeader
    payload: Any
    raw_header: bytes = b""
    """The header part exactly as received (for forwarding without rebuilding it)."""

    @property
    def device_id(self) -> str:
        return self.header.device_id

    @property
    def kind(self) -> StreamKind:
        return self.header.stream

    @property
    def seq(self) -> int:
        return self.header.seq

    @property
    def host_time_ns(self) -> int:
        return self.header.host_time_ns

    @property
    def nbytes(self) -> int:
        return memoryview(self.payload).nbytes

    def decode(self) -> Frame:
        return decode_parts(self.header, self.payload)

    def lazy(self) -> Frame:
        """The frame with its image decoded the first time its pixels are read (bodies are
        decoded now): a consumer that drops frames never pays for decoding them. A payload that
        does not decode then raises :class:`CodecError` where the pixels are read."""
        h = self.header
        if h.stream is StreamKind.body or not h.shape:
            return self.decode()
        try:
            codec = codecs.get(h.codec, h.stream)
        except ValueError as exc:
            raise ProtocolError(str(exc)) from None

        def decode(payload: Any) -> Any:
            try:
                return codec.decode(payload, h.shape, h.dtype)
            except CodecError:
                raise
            except Exception as exc:
                raise CodecError(f"{h.codec} payload could not be decoded: {exc}") from exc

        try:
            return Frame(
                device_id=h.device_id,
                kind=h.stream,
                seq=h.seq,
                encoded=Encoded(
                    codec=h.codec, payload=self.payload, shape=h.shape, dtype=h.dtype, decode=decode
                ),
                device_time_ns=h.device_time_ns,
                host_time_ns=h.host_time_ns,
                frameset_id=h.frameset_id,
                units=h.units,
                intrinsics=_intrinsics(h) if h.intrinsics is not None else None,
                calibration=h.calib,
            )
        except ValueError as exc:
            raise ProtocolError(f"frame does not match its header: {exc}") from None


def parse_encoded(parts: Sequence[Any]) -> EncodedFrame:
    """Check the header and payload size of one frame message without decoding it."""
    if len(parts) != 2:
        raise ProtocolError(f"a frame message has 2 parts, got {len(parts)}")
    header = parse_header(parts[0])
    size = memoryview(parts[1]).nbytes
    if size != header.size:
        raise ProtocolError(f"payload is {size} bytes, header says {header.size}")
    return EncodedFrame(header, parts[1], bytes(parts[0]))


__all__ += ["EncodedFrame", "parse_encoded"]
