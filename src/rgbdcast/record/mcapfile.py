r"""Frames to and from MCAP messages: topics, schemas and conversions (no file handling here).

How this works: each device stream is one MCAP channel on topic ``/<device>/<stream>``; images
use Foxglove's well-known schemas in their ROS 2 form, CDR-encoded (color as it was sent: a JPEG
in ``CompressedImage``; otherwise ``RawImage`` ``bgr8``; depth ``RawImage`` ``16UC1``, infrared
``mono16``, both little-endian and lossless), calibration goes to
``/<device>/<stream>/calibration`` (``CameraCalibration``) whenever it changes, a device's whole
calibration to ``/<device>/calibration`` (JSON) with a ``FrameTransform`` on ``/tf`` between its
optical frames (the images' ``frame_id``\ s), its per-pixel tables to attachments, and bodies are
JSON messages with the schema :data:`BODIES_SCHEMA`. Message ``log_time`` is the capture time on
the host, ``publish_time`` the device's own time, ``sequence`` the frame's sequence number.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import simplejpeg

from ..codecs.body import float_from_json, json_float
from ..codecs.jpeg import JpegCodec
from ..errors import ProtocolError
from ..frames import (
    Body,
    Encoded,
    Frame,
    HandState,
    Joint,
    JointType,
    StreamKind,
    TrackingState,
)
from ..geometry.calibration import VIEW_IN_DEPTH, Calibration, optical_frame, view_frame
from ..geometry.rigfile import RigFile
from ..protocol import cdr
from ..protocol import foxglove as fx
from ..protocol.envelope import EncodedFrame
from ..protocol.viewer import is_plain_jpeg
from .videochain import VideoChain

__all__ = [
    "BODIES_SCHEMA",
    "PROFILE",
    "CALIBRATION_SCHEMA",
    "TABLE_ATTACHMENT",
    "VIDEO_FORMATS",
    "ChannelSpec",
    "bodies_scene_message",
    "calibration_message",
    "full_calibration_messages",
    "optical_frame",
    "points_message",
    "frame_message",
    "message_frame",
]

PROFILE = ""  # MCAP profile: ours mixes CDR (ros2msg schemas) and JSON channels
METADATA_NAME = "rgbdcast"

BODIES_SCHEMA = {
    "title": "rgbdcast.Bodies",
    "description": "Tracked bodies of one frame (Kinect v2 joint order); see docs/recording.md",
    "type": "object",
    "properties": {
        "timestamp": {
            "type": "object",
            "properties": {"sec": {"type": "integer"}, "nsec": {"type": "integer"}},
        },
        "frame_id": {"type": "string"},
        "bodies": {
            "type": "array",
            "maxItems": 6,
            "items": {
                "type": "object",
                "properties": {
                    "tracking_id": {"type": "string", "description": "64-bit id, decimal"},
                    "left_hand": {"type": "integer"},
                    "right_hand": {"type": "integer"},
                    "joints": {
                        "type": "array",
                        "minItems": 25,
                        "maxItems": 25,
                        "description": "[x, y, z (m), state, color_x, color_y, depth_x, depth_y]"
                        " per joint; null where a projection is unknown",
                        "items": {"type": "array", "minItems": 8, "maxItems": 8},
                    },
                },
            },
        },
    },
}


@dataclass(frozen=True)
class ChannelSpec:
    """What a channel holds: its topic, schema (name, encoding, text) and message encoding."""

    topic: str
    schema: tuple[str, str, bytes]
    message_encoding: str


def _ros(schema: tuple[str, str]) -> tuple[str, str, bytes]:
    return (schema[0], "ros2msg", schema[1].encode())


CALIBRATION_SCHEMA = {
    "title": "rgbdcast.Calibration",
    "description": "A device's calibration, version 1: docs/protocol.md, section Calibration",
    "type": "object",
}
TRANSFORMS_TOPIC = "/tf"
TABLE_ATTACHMENT = "rgbdcast/{device}/{revision}/{table}"
"""The name of an attachment holding a per-pixel table (float32 little-endian, [H, W, 2])."""


def full_calibration_messages(cal: Calibration, t_ns: int) -> list[tuple[ChannelSpec, bytes]]:
    """What a device's calibration becomes in a recording: itself (JSON, on
    ``/<device>/calibration``, what a replay reads back), Foxglove ``CameraCalibration`` for
    depth, infrared and color (with distortion), and ``FrameTransform`` messages on ``/tf``
    placing the color camera in the depth camera and the upright ``<device>_view`` frame (z up)
    under it, so that Foxglove's 3-D panel can put them together and show them upright."""
    device = cal.device_id
    schema = ("rgbdcast.Calibration", "jsonschema", json.dumps(CALIBRATION_SCHEMA).encode())
    out = [
        (
            ChannelSpec(f"/{device}/calibration", schema, "json"),
            json.dumps(cal.to_dict(), separators=(",", ":")).encode(),
        )
    ]
    for kind in (StreamKind.depth, StreamKind.infrared, StreamKind.color):
        intr = cal.intrinsics_of(kind)
        if intr is not None:
            msg = cdr.encode_calibration(t_ns, optical_frame(device, kind), intr)
            out.append((channel_spec(device, kind, "calibration"), msg))
    if cal.depth_to_color is not None:
        pose = cal.depth_to_color.inverse()  # the color camera's pose in the depth camera
        tx, ty, tz = pose.translation
        msg = cdr.encode_frame_transform(
            t_ns, cal.depth_frame, cal.color_frame, (tx, ty, tz), pose.quaternion()
        )
        out.append((ChannelSpec(TRANSFORMS_TOPIC, _ros(cdr.FRAME_TRANSFORM), "cdr"), msg))
    view = cdr.encode_frame_transform(
        t_ns, cal.depth_frame, view_frame(device), (0.0, 0.0, 0.0), VIEW_IN_DEPTH
    )
    out.append((ChannelSpec(TRANSFORMS_TOPIC, _ros(cdr.FRAME_TRANSFORM), "cdr"), view))
    return out


RIG_TOPIC = "/rig"


def rig_messages(rig: RigFile, t_ns: int) -> list[tuple[ChannelSpec, bytes]]:
    """What a rig file becomes in a recording: itself (JSON on ``/rig``) and, on ``/tf``, a
    ``FrameTransform`` from the rig frame to each camera's depth optical frame, so Foxglove's
    3-D panel shows every camera (and its clouds and images) in one frame."""
    schema = ("rgbdcast.RigFile", "jsonschema", json.dumps({"type": "object"}).encode())
    out = [(ChannelSpec(RIG_TOPIC, schema, "json"), json.dumps(rig.to_dict()).encode())]
    tf = ChannelSpec(TRANSFORMS_TOPIC, _ros(cdr.FRAME_TRANSFORM), "cdr")
    for key, cam in rig.devices.items():
        device = key.split(" ", 1)[1]
        pose = cam.rig_from_depth
        tx, ty, tz = pose.translation
        child = optical_frame(device, StreamKind.depth)
        out.append(
            (
                tf,
                cdr.encode_frame_transform(t_ns, rig.frame, child, (tx, ty, tz), pose.quaternion()),
            )
        )
    return out


def points_message(
    device: str, t_ns: int, points: np.ndarray, rgb: np.ndarray
) -> tuple[ChannelSpec, bytes]:
    """A colored cloud as a Foxglove ``PointCloud`` in the device's depth optical frame."""
    msg = cdr.encode_point_cloud(t_ns, optical_frame(device, StreamKind.depth), points, rgb)
    return ChannelSpec(f"/{device}/points", _ros(cdr.POINT_CLOUD), "cdr"), msg


def channel_spec(device: str, kind: StreamKind, fmt: str) -> ChannelSpec:
    """The channel of a device stream written as *fmt* (``jpeg``, ``video``, ``raw`` or
    ``calibration``)."""
    topic = f"/{device}/{kind.value}"
    if fmt == "calibration":
        return ChannelSpec(f"{topic}/calibration", _ros(cdr.CALIBRATION), "cdr")
    if kind is StreamKind.body:
        schema = ("rgbdcast.Bodies", "jsonschema", json.dumps(BODIES_SCHEMA).encode())
        return ChannelSpec(topic, schema, "json")
    if fmt == "jpeg":
        return ChannelSpec(topic, _ros(cdr.COMPRESSED_IMAGE), "cdr")
    if fmt == "video":
        return ChannelSpec(topic, _ros(cdr.COMPRESSED_VIDEO), "cdr")
    return ChannelSpec(topic, _ros(cdr.RAW_IMAGE), "cdr")


def frame_message(encoded: EncodedFrame) -> tuple[ChannelSpec, bytes]:
    """The channel and message bytes for one frame as received (decoded only where needed)."""
    h = encoded.header
    device, kind, t = h.device_id, h.stream, h.host_time_ns
    if kind is StreamKind.color and h.codec == "jpeg" and is_plain_jpeg(encoded.payload):
        msg = cdr.encode_compressed_image(t, optical_frame(device, kind), encoded.payload, "jpeg")
        return channel_spec(device, kind, "jpeg"), msg
    if h.codec in VIDEO_FORMATS:  # the unit as sent; the recorder keeps only decodable runs
        fmt = VIDEO_FORMATS[h.codec]
        msg = cdr.encode_compressed_image(t, optical_frame(device, kind), encoded.payload, fmt)
        return channel_spec(device, kind, "video"), msg
    frame = encoded.decode()
    if kind is StreamKind.body:
        return channel_spec(device, kind, "json"), _bodies_json(frame)
    arr = np.ascontiguousarray(frame.array)
    if kind is StreamKind.color:
        if arr.shape[2] == 4:
            arr = np.ascontiguousarray(arr[:, :, :3])
        enc, step = "bgr8", arr.shape[1] * 3
    else:
        arr = arr.astype("<u2", copy=False)
        enc, step = ("16UC1" if kind is StreamKind.depth else "mono16"), arr.shape[1] * 2
    frame_id = optical_frame(device, kind)
    msg = cdr.encode_raw_image(t, frame_id, arr.shape[1], arr.shape[0], enc, step, arr.data)
    return channel_spec(device, kind, "raw"), msg


def bodies_scene_message(frame: Frame) -> tuple[ChannelSpec, bytes] | None:
    """A body frame as the live Foxglove server shows it: a ``SceneUpdate`` (protobuf) on
    ``/<device>/bodies``, one entity per body in the depth optical frame. None without the
    ``[foxglove]`` extra; the JSON on ``/<device>/body`` (what a replay reads) is written
    either way."""
    if not fx.have_sdk():
        return None
    frame_id = optical_frame(frame.device_id, StreamKind.depth)
    update = fx.bodies_update(frame.host_time_ns, frame_id, frame.bodies)
    spec = ChannelSpec(f"/{frame.device_id}/bodies", fx.schema_of(update), "protobuf")
    return spec, bytes(update.encode())


def calibration_message(encoded: EncodedFrame) -> tuple[ChannelSpec, bytes] | None:
    h = encoded.header
    if h.intrinsics is None:
        return None
    from ..frames import Intrinsics

    intr = Intrinsics.from_dict(h.intrinsics)
    msg = cdr.encode_calibration(h.host_time_ns, optical_frame(h.device_id, h.stream), intr)
    return channel_spec(h.device_id, h.stream, "calibration"), msg


def _bodies_json(frame: Frame) -> bytes:
    sec, nsec = divmod(frame.host_time_ns, 1_000_000_000)
    bodies = [
        {
            "tracking_id": str(b.tracking_id),
            "left_hand": int(b.left_hand),
            "right_hand": int(b.right_hand),
            "joints": [
                [
                    *map(json_float, j.position),
                    int(j.state),
                    *map(json_float, j.color_xy),
                    *map(json_float, j.depth_xy),
                ]
                for j in b.joints
            ],
        }
        for b in frame.bodies
    ]
    doc = {"timestamp": {"sec": sec, "nsec": nsec}, "frame_id": frame.device_id, "bodies": bodies}
    return json.dumps(doc, separators=(",", ":"), allow_nan=False).encode()


def _bodies(data: bytes) -> tuple[Body, ...]:
    doc = json.loads(data)
    out = []
    for b in doc["bodies"]:
        joints = tuple(
            Joint(
                type=JointType(i),
                position=(float_from_json(j[0]), float_from_json(j[1]), float_from_json(j[2])),
                state=TrackingState(int(j[3])),
                color_xy=(float_from_json(j[4]), float_from_json(j[5])),
                depth_xy=(float_from_json(j[6]), float_from_json(j[7])),
            )
            for i, j in enumerate(b["joints"])
        )
        out.append(
            Body(
                tracking_id=int(b["tracking_id"]),
                joints=joints,
                left_hand=HandState(int(b["left_hand"])),
                right_hand=HandState(int(b["right_hand"])),
            )
        )
    return tuple(out)


_JPEG = JpegCodec()


def _decode_jpeg(jpeg: bytes) -> np.ndarray:
    h, w, _, _ = simplejpeg.decode_jpeg_header(jpeg)
    out = _JPEG.decode(jpeg, (h, w, 3), "|u1")  # as clients decode it
    assert isinstance(out, np.ndarray)
    return out


VIDEO_FORMATS = {"h264": "h264", "hevc": "h265"}
"""Our video codecs by their ``CompressedVideo`` format names."""
_VIDEO_CODECS = {fmt: codec for codec, fmt in VIDEO_FORMATS.items()}

_RAW: dict[str, tuple[str, int]] = {"bgr8": ("u1", 3), "16UC1": ("<u2", 1), "mono16": ("<u2", 1)}


def message_frame(
    device: str,
    kind: StreamKind,
    schema_name: str,
    data: bytes,
    seq: int,
    device_time_ns: int,
    host_time_ns: int,
    chains: dict[str, VideoChain] | None = None,
) -> Frame | None:
    """A frame back from one message of a device stream channel; ProtocolError if malformed.
    A video unit needs its channel's *chains* entry (made here, by format); None for a unit
    that cannot be decoded (before the file's first keyframe)."""
    try:
        payload: Any = None
        encoded = None
        if kind is StreamKind.body:
            payload = _bodies(data)
        elif schema_name == cdr.COMPRESSED_VIDEO[0]:
            img = cdr.decode_compressed_image(data)
            codec = _VIDEO_CODECS.get(img["format"])
            if codec is None or chains is None:
                raise ProtocolError(f"compressed video format {img['format']!r} is not supported")
            chain = chains.get(codec)
            if chain is None:
                chain = chains[codec] = VideoChain(codec, kind)
            encoded = chain.add(img["data"].tobytes())
            if encoded is None:
                return None
        elif schema_name == cdr.COMPRESSED_IMAGE[0]:
            img = cdr.decode_compressed_image(data)
            if img["format"] != "jpeg":
                raise ProtocolError(f"compressed image format {img['format']!r} is not supported")
            jpeg = img["data"].tobytes()
            h, w, _, _ = simplejpeg.decode_jpeg_header(jpeg)
            # decoded only if someone reads the pixels; a server serving JPEG sends it as it is
            encoded = Encoded(
                codec="jpeg", payload=jpeg, shape=(h, w, 3), dtype="|u1", decode=_decode_jpeg
            )
        elif schema_name == cdr.RAW_IMAGE[0]:
            img = cdr.decode_raw_image(data)
            if img["encoding"] not in _RAW:
                raise ProtocolError(f"raw image encoding {img['encoding']!r} is not supported")
            dtype, channels = _RAW[img["encoding"]]
            h, w = img["height"], img["width"]
            arr = np.frombuffer(img["data"], dtype=dtype)
            shape = (h, w, channels) if channels > 1 else (h, w)
            payload = arr.reshape(shape).astype(arr.dtype.newbyteorder("="), copy=True)
        else:
            raise ProtocolError(f"schema {schema_name!r} is not a frame schema rgbdcast reads")
        return Frame(
            device_id=device,
            kind=kind,
            seq=seq,
            data=payload,
            encoded=encoded,
            device_time_ns=device_time_ns,
            host_time_ns=host_time_ns,
            frameset_id=seq,
        )
    except ProtocolError:
        raise
    except Exception as exc:  # bad JSON, wrong sizes, invalid values: one clear error
        raise ProtocolError(f"malformed {kind.value} message: {exc}") from None
