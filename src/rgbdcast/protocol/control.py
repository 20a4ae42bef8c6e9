"""The control protocol: streamkinect2 v1 messages plus rgbdcast extensions (sans-I/O).

How this works: every control message is a multipart ZeroMQ message of one or two frames. The
first frame is one byte, the message type; the second, when present, is a UTF-8 JSON object.
:func:`parse_msg` turns frames into ``(type, payload)`` or raises :class:`ProtocolError` carrying
an :class:`ErrorCode`; :class:`ControlResponder` maps one request to one reply and never raises,
so a server loop around it stays a few lines long.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import ProtocolError

__all__ = [
    "CLIENT_TYPES",
    "MAX_CONTROL_BYTES",
    "MAX_JSON_DEPTH",
    "PROTOCOL_VERSION",
    "ControlResponder",
    "ControlStats",
    "ErrorCode",
    "MAX_REPLY_BYTES",
    "MessageType",
    "RequestRefused",
    "make_msg",
    "parse_msg",
    "parse_reply",
]

PROTOCOL_VERSION = 1
MAX_CONTROL_BYTES = 1 << 20
"""Control messages larger than this (all frames together) are refused without parsing."""
MAX_JSON_DEPTH = 32


class MessageType(enum.IntEnum):
    """Control message types. 0x00-0x04 are streamkinect2 v1; 0x10 and up are extensions."""

    error = 0x00
    ping = 0x01
    pong = 0x02
    who = 0x03
    me = 0x04
    stats = 0x10
    """Extension: ask the server for its counters. Reply: ``stats_reply``."""
    stats_reply = 0x11
    calibration = 0x12
    """Extension: ask for one device's calibration, and its per-pixel tables (``{"device": id,
    "tables": [name, ...]}``). Reply: ``calibration_reply``, each table one binary frame."""
    calibration_reply = 0x13
    time = 0x14
    """Extension: ask for the server's clock. Reply: ``time_reply`` ``{"t_ns": int}``, the
    server's clock (ns since the Unix epoch) when it answered (clock offset estimation)."""
    time_reply = 0x15
    keyframe = 0x16
    """Extension: a video subscriber lost its chain (``{"device": id, "stream": "color"}``) and
    asks for a keyframe. Reply: ``keyframe_reply`` ``{"queued": true}``; the server forces one
    soon, at most one per half second per stream, merging the requests that wait."""
    keyframe_reply = 0x17


CLIENT_TYPES = frozenset(
    {
        MessageType.ping,
        MessageType.who,
        MessageType.stats,
        MessageType.calibration,
        MessageType.time,
        MessageType.keyframe,
    }
)
MAX_REPLY_BYTES = 64 << 20
"""A reply with binary parts (a calibration's tables) larger than this is refused."""


class ErrorCode(enum.IntEnum):
    """The ``code`` field of an error reply (the ``reason`` field says the same for people)."""

    bad_message = 1
    unknown_type = 2
    bad_json = 3
    too_large = 4
    not_a_request = 5
    internal = 6
    unknown_device = 7
    bad_request = 8
    """A request whose payload lacks or mistypes a field it needs."""


class RequestRefused(ProtocolError):
    """A request the responder will not answer: an error reply with *code* and *reason*."""

    def __init__(self, code: ErrorCode, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def make_msg(mtype: MessageType, payload: dict[str, Any] | None = None) -> list[bytes]:
    """The frames of one control message."""
    frames = [bytes([int(mtype)])]
    if payload is not None:
        frames.append(json.dumps(payload, separators=(",", ":")).encode("utf-8"))
    return frames


def _depth(obj: Any, limit: int) -> int:
    stack = [(obj, 1)]
    deepest = 0
    while stack:
        item, d = stack.pop()
        if d > limit:
            return d
        deepest = max(deepest, d)
        if isinstance(item, dict):
            stack.extend((v, d + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, d + 1) for v in item)
    return deepest


def parse_msg(frames: Sequence[bytes]) -> tuple[MessageType, dict[str, Any] | None]:
    """Parse the frames of a control message; :class:`ProtocolError` (with ``.code``) if bad."""
    if not 1 <= len(frames) <= 2:
        raise RequestRefused(ErrorCode.bad_message, f"expected 1 or 2 frames, got {len(frames)}")
    if sum(len(f) for f in frames) > MAX_CONTROL_BYTES:
        raise RequestRefused(ErrorCode.too_large, f"message exceeds {MAX_CONTROL_BYTES} bytes")
    head = frames[0]
    if len(head) != 1:
        raise RequestRefused(ErrorCode.bad_message, f"type frame must be 1 byte, got {len(head)}")
    try:
        mtype = MessageType(head[0])
    except ValueError:
        raise RequestRefused(
            ErrorCode.unknown_type, f"unknown message type 0x{head[0]:02x}"
        ) from None
    if len(frames) == 1:
        return mtype, None
    try:
        payload = json.loads(bytes(frames[1]).decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise RequestRefused(ErrorCode.bad_json, f"payload is not valid JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise RequestRefused(ErrorCode.bad_json, "payload must be a JSON object")
    if _depth(payload, MAX_JSON_DEPTH) > MAX_JSON_DEPTH:
        raise RequestRefused(ErrorCode.bad_json, f"payload nests deeper than {MAX_JSON_DEPTH}")
    return mtype, payload


def parse_reply(frames: Sequence[bytes]) -> tuple[MessageType, dict[str, Any] | None, list[bytes]]:
    """Parse a reply: like :func:`parse_msg`, except that a ``calibration_reply`` carries its
    tables as binary frames after the JSON (all of it at most :data:`MAX_REPLY_BYTES`)."""
    if len(frames) > 2 and frames[0][:1] == bytes([MessageType.calibration_reply]):
        if sum(len(f) for f in frames) > MAX_REPLY_BYTES:
            raise RequestRefused(ErrorCode.too_large, f"reply exceeds {MAX_REPLY_BYTES} bytes")
        mtype, payload = parse_msg(frames[:2])
        return mtype, payload, [bytes(f) for f in frames[2:]]
    mtype, payload = parse_msg(frames)
    return mtype, payload, []


def error_msg(code: ErrorCode, reason: str) -> list[bytes]:
    return make_msg(MessageType.error, {"reason": reason, "code": int(code)})


@dataclass
class ControlStats:
    """Counters of a control endpoint; ``errors`` is keyed by :class:`ErrorCode` name."""

    requests: int = 0
    errors: dict[str, int] = field(default_factory=dict)

    def count_error(self, code: ErrorCode) -> None:
        self.errors[code.name] = self.errors.get(code.name, 0) + 1


class ControlResponder:
    """Maps each request to its reply. ``me`` builds the who/me payload; ``stats`` the counters.

    >>> r = ControlResponder(me=lambda: {"version": 1, "name": "x", "endpoints": {}, "devices": []})
    >>> r.respond([b"\\x01"])
    [b'\\x02']
    """

    def __init__(
        self,
        me: Callable[[], dict[str, Any]],
        stats: Callable[[], dict[str, Any]] | None = None,
        calibration: Callable[[str, list[str]], tuple[dict[str, Any], list[bytes]]] | None = None,
        clock: Callable[[], int] | None = None,
        keyframe: Callable[[str, str], None] | None = None,
    ) -> None:
        self._me = me
        self._keyframe = keyframe
        self._stats = stats or (lambda: {})
        self._calibration = calibration
        self._clock = clock
        self.counters = ControlStats()
        self.last_error: str | None = None

    def respond(self, frames: Sequence[bytes]) -> list[bytes]:
        self.counters.requests += 1
        try:
            mtype, _payload = parse_msg(frames)
            if mtype not in CLIENT_TYPES:
                raise RequestRefused(ErrorCode.not_a_request, f"{mtype.name} is not a request")
            if mtype is MessageType.ping:
                return make_msg(MessageType.pong)
            if mtype is MessageType.who:
                return make_msg(MessageType.me, self._me())
            if mtype is MessageType.calibration:
                return self._answer_calibration(_payload)
            if mtype is MessageType.keyframe:
                return self._answer_keyframe(_payload)
            if mtype is MessageType.time:
                if self._clock is None:
                    raise RequestRefused(ErrorCode.unknown_type, "this server has no clock to give")
                return make_msg(MessageType.time_reply, {"t_ns": int(self._clock())})
            return make_msg(MessageType.stats_reply, self._stats())
        except RequestRefused as exc:
            self.counters.count_error(exc.code)
            self.last_error = exc.reason
            return error_msg(exc.code, exc.reason)
        except Exception as exc:  # a bug on our side must not kill the control loop
            self.counters.count_error(ErrorCode.internal)
            self.last_error = f"internal error: {exc!r}"
            return error_msg(ErrorCode.internal, self.last_error)

    def _answer_keyframe(self, payload: dict[str, Any] | None) -> list[bytes]:
        device = (payload or {}).get("device")
        stream = (payload or {}).get("stream")
        if not isinstance(device, str) or not isinstance(stream, str):
            raise RequestRefused(
                ErrorCode.bad_request, 'keyframe needs {"device": id, "stream": name}'
            )
        if self._keyframe is None:
            raise RequestRefused(ErrorCode.unknown_type, "this server sends no video")
        self._keyframe(device, stream)  # raises RequestRefused for a wrong device or stream
        return make_msg(MessageType.keyframe_reply, {"queued": True})

    def _answer_calibration(self, payload: dict[str, Any] | None) -> list[bytes]:
        device = (payload or {}).get("device")
        tables = (payload or {}).get("tables", [])
        if not isinstance(device, str) or not device:
            raise RequestRefused(ErrorCode.bad_request, 'calibration needs {"device": id}')
        if not isinstance(tables, list) or not all(isinstance(t, str) for t in tables):
            raise RequestRefused(
                ErrorCode.bad_request, "calibration tables must be a list of names"
            )
        if self._calibration is None:
            raise RequestRefused(ErrorCode.unknown_type, "this server has no calibrations")
        answer, parts = self._calibration(device, tables)
        return [*make_msg(MessageType.calibration_reply, answer), *parts]


class EndpointType(enum.Enum):
    """Endpoints a server exposes (streamkinect2's enumeration, extended with our streams).

    ``control`` is a REP endpoint accepting control messages; the others are PUB endpoints
    broadcasting frames of one device stream.
    """

    control = 1
    depth = 2
    color = 3
    infrared = 4
    body = 5


__all__ += ["EndpointType"]
