"""Sans-I/O protocol code: control messages and the frame envelope. No sockets, no threads."""

from .control import (
    MAX_CONTROL_BYTES,
    PROTOCOL_VERSION,
    ControlResponder,
    EndpointType,
    ErrorCode,
    MessageType,
    make_msg,
    parse_msg,
)
from .envelope import FrameHeader, build_header, decode_frame, parse_header

__all__ = [
    "MAX_CONTROL_BYTES",
    "PROTOCOL_VERSION",
    "ControlResponder",
    "EndpointType",
    "ErrorCode",
    "FrameHeader",
    "MessageType",
    "build_header",
    "parse_header",
    "decode_frame",
    "make_msg",
    "parse_msg",
]
