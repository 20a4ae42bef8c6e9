"""Messages of the web viewer's WebSocket (sans-I/O).

How this works: the server sends two kinds of message. Text messages are JSON objects with a
``type`` (``hello``, ``devices``, ``stats``). Binary messages carry one frame as
``u32 header length (big-endian) | JSON header | payload``, where the payload is in a form a
browser can show without our codecs: color as one standard JPEG (``fmt: "jpeg"``, decoded by the
browser), depth and infrared as RVL (``fmt: "rvl"``, decoded by the page's own few lines of
JavaScript; where the C accelerator is not built, zlib-deflated little-endian uint16 pixels,
``fmt: "u16z"``, inflated with the browser's ``DecompressionStream``), so the page keeps the
real values for its colormap and the distance under the cursor; bodies as JSON
(``fmt: "bodies"``, each joint ``[color_x, color_y, depth_x, depth_y, state]`` with ``null``
for unknown projections); and a device with a calibration has a ``points`` stream for the 3-D
view, a colored cloud (``fmt: "cloud"``, :func:`cloud_message`).
The browser answers each frame of a stream with ``{"type": "ack", "key": "<device>/<stream>"}``
and gets that stream's next (newest) frame only after its ack: one frame in flight per stream,
so a slow page is sent fewer frames instead of a growing backlog.
"""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Callable
from typing import Any

import numpy as np

from ..codecs.body import json_float
from ..codecs.grad import RvlCodec, native_available
from ..codecs.jpeg import JpegCodec
from ..errors import ProtocolError
from ..frames import BONES, JOINT_NAMES, Body, Frame, StreamKind

__all__ = [
    "MAX_CLIENT_MESSAGE",
    "avc_codec_string",
    "cloud_message",
    "frame_message",
    "is_plain_jpeg",
    "hello_message",
    "parse_client_message",
    "parse_frame_message",
    "text_message",
    "video_message",
]

MAX_CLIENT_MESSAGE = 4096
"""Bytes a browser may send in one message (acks are about 40)."""

DEFAULT_JPEG_QUALITY = 80
_LEN = struct.Struct(">I")
_jpeg = JpegCodec()
_RVL = RvlCodec() if native_available() else None


def text_message(kind: str, **fields: Any) -> str:
    return json.dumps({"type": kind, **fields}, separators=(",", ":"), allow_nan=False)


def hello_message(server: str, version: str, mode: str) -> str:
    """The first message of every connection: what is drawn how."""
    return text_message(
        "hello",
        server=server,
        version=version,
        mode=mode,
        joints=list(JOINT_NAMES),
        bones=[[int(a), int(b)] for a, b in BONES],
    )


def _num(v: float) -> float | None:
    f = json_float(v)
    return None if f is None else round(float(f), 1)


def bodies_payload(bodies: tuple[Body, ...]) -> bytes:
    out = [
        {
            "id": str(b.tracking_id),  # 64-bit ids do not survive JavaScript numbers
            "left_hand": int(b.left_hand),
            "right_hand": int(b.right_hand),
            "joints": [
                [*(_num(v) for v in j.color_xy), *(_num(v) for v in j.depth_xy), int(j.state)]
                for j in b.joints
            ],
        }
        for b in bodies
    ]
    return json.dumps(out, separators=(",", ":"), allow_nan=False).encode()


def frame_message(
    frame: Frame | None,
    *,
    jpeg: Any = None,
    meta: dict[str, Any] | None = None,
    jpeg_quality: int = DEFAULT_JPEG_QUALITY,
    send_time_ms: float = 0.0,
    device: str | None = None,
) -> bytes:
    """One binary frame message. *frame* is the decoded frame; for color, *jpeg* may give the
    stream's own JPEG instead (then *meta* gives device, stream, seq, t_host_ns, width and height
    and *frame* may be None). *device* replaces the frame's device id (``rgbdcast view`` shows
    devices of several servers)."""
    if frame is not None:
        meta = {
            "device": frame.device_id,
            "stream": frame.kind.value,
            "seq": frame.seq,
            "t_host_ns": frame.host_time_ns,
            "units": frame.units,
        }
        if frame.kind is not StreamKind.body:  # from the shape: a source's JPEG stays encoded
            meta["height"], meta["width"] = frame.shape[:2]
    if meta is None:
        raise ValueError("frame_message needs a frame or meta")
    kind = StreamKind(meta["stream"])
    if kind is StreamKind.color:
        if jpeg is None:
            assert frame is not None
            jpeg = _jpeg.encode(frame.array, {"quality": jpeg_quality})
        fmt, payload = "jpeg", jpeg
    elif kind is StreamKind.body:
        assert frame is not None
        fmt, payload = "bodies", bodies_payload(frame.bodies)
    else:
        assert frame is not None
        arr = np.ascontiguousarray(frame.array, dtype="<u2")
        if _RVL is not None:  # ten times faster than deflate here, and smaller
            fmt, payload = "rvl", _RVL.encode(arr, {})
        else:
            fmt, payload = "u16z", zlib.compress(arr.data, 1)
    header = {
        "device": device or meta["device"],
        "stream": kind.value,
        "seq": int(meta["seq"]),
        "t_host_ms": int(meta.get("t_host_ns", 0)) / 1e6,
        "t_send_ms": send_time_ms,
        "width": int(meta.get("width", 0)),
        "height": int(meta.get("height", 0)),
        "units": meta.get("units", ""),
        "fmt": fmt,
    }
    head = json.dumps(header, separators=(",", ":")).encode()
    return b"".join((_LEN.pack(len(head)), head, memoryview(payload).cast("B")))


def avc_codec_string(unit: Any) -> str | None:
    """The WebCodecs name (``avc1.PPCCLL``) of an H.264 keyframe's stream, from its SPS:
    profile, constraint flags and level; None if the unit has no SPS."""
    head = bytes(memoryview(unit)[:256])
    at = head.find(b"\x00\x00\x01")
    while 0 <= at < len(head) - 6:
        if head[at + 3] & 0x1F == 7:
            return "avc1." + head[at + 4 : at + 7].hex().upper()
        at = head.find(b"\x00\x00\x01", at + 3)
    return None


def video_message(
    meta: dict[str, Any], unit: Any, au: int, key: bool, codec: str, send_time_ms: float = 0.0
) -> bytes:
    """One video unit for a browser that decodes it (WebCodecs): ``fmt: "h264"``, the unit's
    number ``au``, ``key``, and for a keyframe the decoder's ``codec`` string; *meta* as in
    :func:`frame_message` (device, stream, seq, t_host_ns, width, height)."""
    header = {
        "device": meta["device"],
        "stream": meta["stream"],
        "seq": int(meta["seq"]),
        "t_host_ms": int(meta.get("t_host_ns", 0)) / 1e6,
        "t_send_ms": send_time_ms,
        "width": int(meta.get("width", 0)),
        "height": int(meta.get("height", 0)),
        "units": "bgr8",
        "fmt": "h264",
        "au": int(au),
        "key": bool(key),
        "codec": codec,
    }
    head = json.dumps(header, separators=(",", ":")).encode()
    return b"".join((_LEN.pack(len(head)), head, memoryview(unit).cast("B")))


def cloud_message(
    device: str,
    seq: int,
    t_host_ns: int,
    points: np.ndarray,
    colors: np.ndarray,
    bodies: tuple[Body, ...] = (),
    send_time_ms: float = 0.0,
    extra: dict[str, Any] | None = None,
) -> bytes:
    """The 3-D view's frame (``fmt: "cloud"``): *points* (N, 3) float32 metres in the depth
    camera's optical frame go out as int16 millimetres (x y z, little-endian, N*6 bytes), then
    *colors* (N, 3) uint8 RGB; the header carries ``n`` and each body's 25 joints as
    ``[x, y, z, state]`` in the same frame (metres; Kinect camera space is y up, so y flips).
    *extra* adds header fields (a rig's ``cameras``: :mod:`rgbdcast.rigview`)."""
    joints = [
        [
            [_num3(j.position[0]), _num3(-j.position[1]), _num3(j.position[2]), int(j.state)]
            for j in b.joints
        ]
        for b in bodies
    ]
    return cloud_frame(device, seq, t_host_ns, points, colors, joints, send_time_ms, extra)


def rig_joints(bodies: tuple[Body, ...], place: Callable[[np.ndarray], np.ndarray]) -> list[Any]:
    """A camera's bodies as :func:`cloud_message` joints, placed by *place* (optical-frame
    points (N, 3) to the rig frame) so that several cameras' skeletons share one frame."""
    out = []
    for b in bodies:
        optical = np.array([[j.position[0], -j.position[1], j.position[2]] for j in b.joints])
        placed = place(optical) if len(optical) else optical
        out.append(
            [
                [_num3(p[0]), _num3(p[1]), _num3(p[2]), int(j.state)]
                for p, j in zip(placed, b.joints, strict=True)
            ]
        )
    return out


def cloud_frame(
    device: str,
    seq: int,
    t_host_ns: int,
    points: np.ndarray,
    colors: np.ndarray,
    joints: list[Any],
    send_time_ms: float = 0.0,
    extra: dict[str, Any] | None = None,
) -> bytes:
    """:func:`cloud_message` with the joints given as they go out (:func:`rig_joints`)."""
    pts = np.clip(np.rint(np.asarray(points, np.float32) * 1000.0), -32767, 32767)
    header = {
        "device": device,
        "stream": "points",
        "seq": int(seq),
        "t_host_ms": int(t_host_ns) / 1e6,
        "t_send_ms": send_time_ms,
        "fmt": "cloud",
        "n": len(pts),
        "bodies": joints,
        **(extra or {}),
    }
    head = json.dumps(header, separators=(",", ":"), allow_nan=False).encode()
    xyz = pts.astype("<i2").tobytes()
    rgb = np.ascontiguousarray(colors, np.uint8).tobytes()
    return b"".join((_LEN.pack(len(head)), head, xyz, rgb))


def _num3(v: float) -> float | None:
    f = json_float(v)
    return None if f is None else round(float(f), 3)


def is_plain_jpeg(payload: Any) -> bool:
    """True if *payload* is one standard JPEG (not the ``jpeg`` codec's multi-strip form)."""
    return bytes(memoryview(payload)[:2]) == b"\xff\xd8"


def parse_frame_message(data: bytes) -> tuple[dict[str, Any], memoryview]:
    """Split a binary frame message into its header and payload (what the page does)."""
    if len(data) < 4:
        raise ProtocolError("frame message shorter than its length prefix")
    (n,) = _LEN.unpack_from(data)
    if n > len(data) - 4:
        raise ProtocolError("frame message header runs past the message")
    try:
        header = json.loads(data[4 : 4 + n])
    except ValueError as exc:
        raise ProtocolError(f"frame message header is not JSON: {exc}") from None
    if not isinstance(header, dict):
        raise ProtocolError("frame message header must be an object")
    return header, memoryview(data)[4 + n :]


def parse_client_message(data: str | bytes) -> dict[str, Any]:
    """Check one message from a browser: a small JSON object with a known ``type``."""
    if len(data) > MAX_CLIENT_MESSAGE:
        raise ProtocolError(f"message of {len(data)} bytes exceeds {MAX_CLIENT_MESSAGE}")
    try:
        msg = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise ProtocolError(f"not JSON: {exc}") from None
    if not isinstance(msg, dict) or not isinstance(msg.get("type"), str):
        raise ProtocolError("expected a JSON object with a 'type'")
    kind = msg["type"]
    if kind == "ack":
        if not isinstance(msg.get("key"), str):
            raise ProtocolError("ack needs a 'key' string")
    elif kind == "video":
        codecs = msg.get("codecs")
        if not isinstance(codecs, list) or not all(isinstance(c, str) for c in codecs[:8]):
            raise ProtocolError("video needs a 'codecs' list of names")
    elif kind == "select":
        if not isinstance(msg.get("source"), str) or not isinstance(msg.get("on", True), bool):
            raise ProtocolError("select needs a 'source' string and an optional boolean 'on'")
    else:
        raise ProtocolError(f"unknown message type {kind!r}")
    return msg
