"""ROS 2 over Zenoh in rmw_zenoh's format (sans-I/O): key expressions, liveliness tokens,
attachments and the CDR of the messages rgbdcast publishes.

Target: rmw_zenoh_cpp as its design document describes it at ros2/rmw_zenoh commit 99a6a2bd
(``docs/design.md``; the Zenoh 1.x generation used by ROS 2 Jazzy's rmw_zenoh 0.2 series and
later). Data goes to ``<domain>/<topic without its leading slash>/<DDS type name>/<type hash>``;
every node and publisher has a liveliness token
``@ros2_lv/<domain>/<session id>/<node id>/<entity id>/<kind>/<enclave>/<namespace>/<node>``
(publishers add ``/<mangled topic>/<type>/<hash>/<qos>``; names mangled ``/`` -> ``%``, empty
ones ``%``); each sample's attachment is the sequence number and the source timestamp (two
little-endian int64) then the publisher GID (one length byte, 16, and 16 bytes). Type hashes are
REP-2016 ``RIHS01`` values of the Jazzy message definitions (the tests recompute them with
rosbags and check its hashing against the design document's own example).
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from typing import Any

from ..errors import ProtocolError
from ..frames import Intrinsics
from .cdr import Writer, write_pinhole

__all__ = [
    "ADMIN_SPACE",
    "COMPRESSED_IMAGE",
    "COMPRESSED_VIDEO",
    "CAMERA_INFO",
    "FFMPEG_PACKET",
    "IMAGE",
    "POINT_CLOUD2",
    "STRING",
    "TF_MESSAGE",
    "RosType",
    "attachment",
    "camera_info",
    "compressed_depth",
    "compressed_image",
    "compressed_video",
    "ffmpeg_packet",
    "image",
    "liveliness_key",
    "mangle",
    "parse_attachment",
    "point_cloud2",
    "qos_key",
    "ros_name",
    "string",
    "tf_message",
    "topic_key",
]

ADMIN_SPACE = "@ros2_lv"


@dataclass(frozen=True)
class RosType:
    name: str
    """``pkg/msg/Name``."""
    hash: str
    """REP-2016 type hash (``RIHS01_<sha256>``)."""

    @property
    def dds(self) -> str:
        """The DDS-mangled name rmw_zenoh puts in keys: ``pkg::msg::dds_::Name_``."""
        pkg, kind, name = self.name.split("/")
        return f"{pkg}::{kind}::dds_::{name}_"


IMAGE = RosType(
    "sensor_msgs/msg/Image",
    "RIHS01_d31d41a9a4c4bc8eae9be757b0beed306564f7526c88ea6a4588fb9582527d47",
)
COMPRESSED_IMAGE = RosType(
    "sensor_msgs/msg/CompressedImage",
    "RIHS01_15640771531571185e2efc8a100baf923961a4d15d5569652e6cb6691e8e371a",
)
CAMERA_INFO = RosType(
    "sensor_msgs/msg/CameraInfo",
    "RIHS01_b3dfd68ff46c9d56c80fd3bd4ed22c7a4ddce8c8348f2f59c299e73118e7e275",
)
STRING = RosType(
    "std_msgs/msg/String",
    "RIHS01_df668c740482bbd48fb39d76a70dfd4bd59db1288021743503259e948f6b1a18",
)
TF_MESSAGE = RosType(
    "tf2_msgs/msg/TFMessage",
    "RIHS01_e369d0f05a23ae52508854b66f6aa0437f3449d652e8cbf22d5abe85d020f087",
)
POINT_CLOUD2 = RosType(
    "sensor_msgs/msg/PointCloud2",
    "RIHS01_9198cabf7da3796ae6fe19c4cb3bdd3525492988c70522628af5daa124bae2b5",
)

COMPRESSED_VIDEO = RosType(
    "foxglove_msgs/msg/CompressedVideo",
    "RIHS01_32039eafc3770e589c86c4dabff9c392ce9955ebffd43f5f60763011d43d8d1d",
)
"""Foxglove's video message (foxglove/schemas ``ros_foxglove_msgs/ros2``), as
foxglove_compressed_video_transport publishes it on ``<image>/foxglove``."""
FFMPEG_PACKET = RosType(
    "ffmpeg_image_transport_msgs/msg/FFMPEGPacket",
    "RIHS01_648d84e0d33cbf76daf54b094d8f06154b8a24800a19c14371754df799fbaf79",
)
"""ffmpeg_image_transport's packet (ros-misc-utilities/ffmpeg_image_transport_msgs), on
``<image>/ffmpeg``."""

# -- names ---------------------------------------------------------------------------------------


def ros_name(name: str) -> str:
    """*name* as a ROS name token: letters, digits and ``_``, not starting with a digit."""
    token = re.sub(r"[^A-Za-z0-9_]+", "_", name).strip("_") or "unnamed"
    return f"_{token}" if token[0].isdigit() else token


def mangle(name: str) -> str:
    """A name as one key chunk: every ``/`` becomes ``%``; an empty name is ``%``."""
    return name.replace("/", "%") if name else "%"


def topic_key(domain: int, topic: str, rtype: RosType) -> str:
    """The data key of a topic (fully qualified, e.g. ``/kinect/depth/image_raw``)."""
    if not topic.startswith("/") or topic.endswith("/") or "//" in topic:
        raise ProtocolError(f"{topic!r} is not a fully qualified ROS topic name")
    return f"{domain}/{topic[1:]}/{rtype.dds}/{rtype.hash}"


def qos_key(
    *, best_effort: bool = False, transient_local: bool = False, depth: int | None = None
) -> str:
    """rmw_zenoh's compact QoS chunk; components equal to its defaults (reliable, volatile,
    keep last 42, infinite deadline and lifespan, automatic liveliness) are left empty.
    Enum values are rmw's (best effort 2, transient local 1)."""
    rel = "2" if best_effort else ""
    dur = "1" if transient_local else ""
    return f"{rel}:{dur}:,{'' if depth is None else depth}:,:,:,,"


def liveliness_key(
    domain: int,
    session_id: str,
    node_id: int,
    entity_id: int,
    kind: str,
    namespace: str,
    node: str,
    *,
    topic: str | None = None,
    rtype: RosType | None = None,
    qos: str | None = None,
    enclave: str = "",
) -> str:
    """A node's (kind ``NN``) or an endpoint's (``MP``, ``MS``, ``SS``, ``SC``) token key."""
    if kind not in ("NN", "MP", "MS", "SS", "SC"):
        raise ProtocolError(f"unknown entity kind {kind!r}")
    key = (
        f"{ADMIN_SPACE}/{domain}/{session_id}/{node_id}/{entity_id}/{kind}/"
        f"{mangle(enclave)}/{mangle(namespace)}/{node}"
    )
    if kind == "NN":
        return key
    if topic is None or rtype is None or qos is None:
        raise ProtocolError("an endpoint token needs its topic, type and QoS")
    return f"{key}/{mangle(topic)}/{rtype.dds}/{rtype.hash}/{qos}"


_ATTACHMENT = struct.Struct("<qqB16s")


def attachment(seq: int, timestamp_ns: int, gid: bytes) -> bytes:
    """Sequence number, source timestamp and publisher GID, as rmw_zenoh reads them."""
    if len(gid) != 16:
        raise ValueError("a publisher GID is 16 bytes")
    return _ATTACHMENT.pack(seq, timestamp_ns, 16, gid)


def parse_attachment(raw: bytes) -> tuple[int, int, bytes]:
    if len(raw) != _ATTACHMENT.size:
        raise ProtocolError(f"an rmw_zenoh attachment is {_ATTACHMENT.size} bytes, got {len(raw)}")
    seq, ts, n, gid = _ATTACHMENT.unpack(raw)
    if n != 16:
        raise ProtocolError(f"publisher GID length {n}, expected 16")
    return seq, ts, gid


# -- messages (CDR, little-endian) -------------------------------------------------------------


def _header(w: Writer, stamp_ns: int, frame_id: str) -> None:
    w.time(stamp_ns)
    w.string(frame_id)


def image(
    stamp_ns: int, frame_id: str, height: int, width: int, encoding: str, step: int, data: Any
) -> bytes:
    """``sensor_msgs/msg/Image`` (little-endian pixels)."""
    w = Writer()
    _header(w, stamp_ns, frame_id)
    w.u32(height)
    w.u32(width)
    w.string(encoding)
    w.u8(0)  # is_bigendian
    w.u32(step)
    w.octets(data)
    return w.getvalue()


def compressed_image(stamp_ns: int, frame_id: str, fmt: str, data: Any) -> bytes:
    """``sensor_msgs/msg/CompressedImage`` (``fmt``: ``jpeg``, ``png``, ...)."""
    w = Writer()
    _header(w, stamp_ns, frame_id)
    w.string(fmt)
    w.octets(data)
    return w.getvalue()


def compressed_video(stamp_ns: int, frame_id: str, data: Any, fmt: str) -> bytes:
    """``foxglove_msgs/msg/CompressedVideo``: one Annex B access unit (``fmt``: ``h264``,
    ``h265``)."""
    w = Writer()
    w.time(stamp_ns)
    w.string(frame_id)
    w.octets(data)
    w.string(fmt)
    return w.getvalue()


AV_PKT_FLAG_KEY = 1


def ffmpeg_packet(
    stamp_ns: int,
    frame_id: str,
    width: int,
    height: int,
    encoding: str,
    pts: int,
    keyframe: bool,
    data: Any,
) -> bytes:
    """``ffmpeg_image_transport_msgs/msg/FFMPEGPacket``: one access unit; *encoding* is
    ``codec;av_source_pixel_format;cv_bridge_target_format;ros_encoding`` (e.g.
    ``h264;yuv420p;bgr8;bgr8``), *pts* the unit's number, flags FFmpeg's (key = 1)."""
    w = Writer()
    _header(w, stamp_ns, frame_id)
    w.i32(width)
    w.i32(height)
    w.string(encoding)
    w.u64(pts)
    w.u8(AV_PKT_FLAG_KEY if keyframe else 0)
    w.u8(0)  # is_bigendian: the payload is a byte stream
    w.octets(data)
    return w.getvalue()


def camera_info(stamp_ns: int, frame_id: str, intr: Intrinsics) -> bytes:
    """``sensor_msgs/msg/CameraInfo`` from pinhole intrinsics (no rectification)."""
    w = Writer()
    _header(w, stamp_ns, frame_id)
    w.u32(intr.height)
    w.u32(intr.width)
    w.string(intr.model)
    write_pinhole(w, intr)
    for _ in range(6):  # binning_x, binning_y, roi x_offset, y_offset, height, width
        w.u32(0)
    w.u8(0)  # roi.do_rectify
    return w.getvalue()


Transform = tuple[str, str, tuple[float, float, float], tuple[float, float, float, float]]
"""``(parent, child, translation, rotation quaternion x y z w)``: the child's pose in the parent."""


def tf_message(stamp_ns: int, transforms: list[Transform]) -> bytes:
    """``tf2_msgs/msg/TFMessage`` (what ``/tf_static`` carries)."""
    w = Writer()
    w.u32(len(transforms))
    for parent, child, t, q in transforms:
        _header(w, stamp_ns, parent)
        w.string(child)
        w.f64s([float(v) for v in (*t, *q)], fixed=7)
    return w.getvalue()


_FLOAT32 = 7  # sensor_msgs/PointField datatype


def point_cloud2(stamp_ns: int, frame_id: str, points: Any, rgb: Any) -> bytes:
    """``sensor_msgs/msg/PointCloud2`` of an organised cloud: float32 ``x y z`` (metres, NaN
    where there is no point) and ``rgb`` packed into a float32 as PCL and RViz read it
    (``0x00RRGGBB``); 16 bytes a point."""
    import numpy as np

    pts = np.asarray(points, np.float32)
    col = np.asarray(rgb, np.uint8)
    h, w = pts.shape[:2]
    packed = np.empty((h, w, 4), np.float32)
    packed[..., :3] = pts
    bits = (col[..., 0].astype(np.uint32) << 16) | (col[..., 1].astype(np.uint32) << 8)
    packed[..., 3] = (bits | col[..., 2]).view(np.float32)
    out = Writer()
    _header(out, stamp_ns, frame_id)
    out.u32(h)
    out.u32(w)
    out.u32(4)
    for i, name in enumerate(("x", "y", "z", "rgb")):
        out.string(name)
        out.u32(4 * i)
        out.u8(_FLOAT32)
        out.u32(1)
    out.u8(0)  # is_bigendian
    out.u32(16)  # point_step
    out.u32(16 * w)  # row_step
    out.octets(packed.data)
    out.u8(int(not np.isnan(pts).any()))  # is_dense
    return out.getvalue()


def string(text: str) -> bytes:
    """``std_msgs/msg/String``."""
    w = Writer()
    w.string(text)
    return w.getvalue()


_CONFIG_HEADER = struct.Struct("<iff")  # compressionFormat (INV_DEPTH = 0), depthParam[2]


def compressed_depth(depth: Any, method: str = "png") -> tuple[str, bytes]:
    """ROS's ``compressedDepth`` transport for a 16-bit depth image: the ``format`` string and
    the data (compressed_depth_image_transport's 12-byte ConfigHeader, then a 16-bit PNG, or
    for ``rvl`` the width and height as two uint32 and the RVL stream)."""
    import numpy as np

    from ..codecs.png import encode_png

    arr = np.ascontiguousarray(depth, dtype="<u2")
    head = _CONFIG_HEADER.pack(0, 0.0, 0.0)
    if method == "png":
        return "16UC1; compressedDepth png", head + encode_png(arr)
    if method == "rvl":
        from ..codecs import get

        h, w = arr.shape
        body = bytes(memoryview(get("rvl").encode(arr, {})))
        return "16UC1; compressedDepth rvl", head + struct.pack("<II", w, h) + body
    raise ProtocolError(f"compressedDepth method must be png or rvl, not {method!r}")
