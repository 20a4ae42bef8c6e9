"""CDR (XCDR1, little-endian) for the few ROS 2 message types rgbdcast writes (sans-I/O).

How this works: a :class:`Writer` appends primitives with the alignment CDR asks for (relative
to the end of the 4-byte encapsulation header); a :class:`Reader` reads them back and refuses
anything that runs past the buffer. The message types are Foxglove's well-known schemas in their
ROS 2 form (``foxglove_msgs/msg/CompressedImage``, ``RawImage``, ``CameraCalibration``,
``FrameTransform``), which
Foxglove opens natively; their ``ros2msg`` definitions are below, for MCAP schema records.
"""

from __future__ import annotations

import struct
from typing import Any

from ..errors import ProtocolError, UsageError
from ..frames import Intrinsics

__all__ = [
    "CALIBRATION",
    "COMPRESSED_IMAGE",
    "COMPRESSED_VIDEO",
    "FRAME_TRANSFORM",
    "pack_points",
    "POINT_CLOUD",
    "RAW_IMAGE",
    "Reader",
    "Writer",
    "decode_calibration",
    "decode_compressed_image",
    "decode_raw_image",
    "encode_calibration",
    "encode_compressed_image",
    "encode_frame_transform",
    "encode_point_cloud",
    "encode_raw_image",
    "write_pinhole",
]

_HEADER = b"\x00\x01\x00\x00"  # CDR_LE, no options
_TIME = "MSG: builtin_interfaces/Time\nint32 sec\nuint32 nanosec\n"
_SEP = "=" * 80 + "\n"

COMPRESSED_IMAGE = (
    "foxglove_msgs/msg/CompressedImage",
    "builtin_interfaces/Time timestamp\nstring frame_id\nuint8[] data\nstring format\n"
    + _SEP
    + _TIME,
)
COMPRESSED_VIDEO = (
    "foxglove_msgs/msg/CompressedVideo",
    "builtin_interfaces/Time timestamp\nstring frame_id\nuint8[] data\nstring format\n"
    + _SEP
    + _TIME,
)
"""The same fields as ``CompressedImage``: one Annex B access unit, format ``h264`` or ``h265``."""
RAW_IMAGE = (
    "foxglove_msgs/msg/RawImage",
    "builtin_interfaces/Time timestamp\nstring frame_id\nuint32 width\nuint32 height\n"
    "string encoding\nuint32 step\nuint8[] data\n" + _SEP + _TIME,
)
CALIBRATION = (
    "foxglove_msgs/msg/CameraCalibration",
    "builtin_interfaces/Time timestamp\nstring frame_id\nuint32 width\nuint32 height\n"
    "string distortion_model\nfloat64[] d\nfloat64[9] k\nfloat64[9] r\nfloat64[12] p\n"
    + _SEP
    + _TIME,
)
FRAME_TRANSFORM = (
    "foxglove_msgs/msg/FrameTransform",
    "builtin_interfaces/Time timestamp\nstring parent_frame_id\nstring child_frame_id\n"
    "geometry_msgs/Vector3 translation\ngeometry_msgs/Quaternion rotation\n"
    + _SEP
    + _TIME
    + _SEP
    + "MSG: geometry_msgs/Vector3\nfloat64 x\nfloat64 y\nfloat64 z\n"
    + _SEP
    + "MSG: geometry_msgs/Quaternion\nfloat64 x\nfloat64 y\nfloat64 z\nfloat64 w\n",
)
POINT_CLOUD = (
    "foxglove_msgs/msg/PointCloud",
    "builtin_interfaces/Time timestamp\nstring frame_id\ngeometry_msgs/Pose pose\n"
    "uint32 point_stride\nfoxglove_msgs/PackedElementField[] fields\nuint8[] data\n"
    + _SEP
    + _TIME
    + _SEP
    + "MSG: geometry_msgs/Pose\ngeometry_msgs/Point position\n"
    "geometry_msgs/Quaternion orientation\n"
    + _SEP
    + "MSG: geometry_msgs/Point\nfloat64 x\nfloat64 y\nfloat64 z\n"
    + _SEP
    + "MSG: geometry_msgs/Quaternion\nfloat64 x\nfloat64 y\nfloat64 z\nfloat64 w\n"
    + _SEP
    + "MSG: foxglove_msgs/PackedElementField\nuint8 UNKNOWN=0\nuint8 UINT8=1\nuint8 INT8=2\n"
    "uint8 UINT16=3\nuint8 INT16=4\nuint8 UINT32=5\nuint8 INT32=6\nuint8 FLOAT32=7\n"
    "uint8 FLOAT64=8\nstring name\nuint32 offset\nuint8 type\n",
)


class Writer:
    def __init__(self) -> None:
        self._parts: list[bytes | memoryview] = [_HEADER]
        self._pos = 0  # offset after the encapsulation header

    def _align(self, n: int) -> None:
        pad = -self._pos % n
        if pad:
            self._parts.append(b"\x00" * pad)
            self._pos += pad

    def _put(self, fmt: str, *values: Any) -> None:
        size = struct.calcsize("<" + fmt[-1])
        self._align(size)
        data = struct.pack("<" + fmt, *values)
        self._parts.append(data)
        self._pos += len(data)

    def time(self, ns: int) -> None:
        sec, nsec = divmod(int(ns), 1_000_000_000)
        self._put("i", sec)
        self._put("I", nsec)

    def u32(self, v: int) -> None:
        self._put("I", v)

    def u8(self, v: int) -> None:
        self._put("B", v)

    def i32(self, v: int) -> None:
        self._put("i", v)

    def u64(self, v: int) -> None:
        self._put("Q", v)

    def string(self, s: str) -> None:
        raw = s.encode() + b"\x00"
        self.u32(len(raw))
        self._parts.append(raw)
        self._pos += len(raw)

    def octets(self, data: Any) -> None:
        view = memoryview(data).cast("B")
        self.u32(view.nbytes)
        self._parts.append(view)
        self._pos += view.nbytes

    def f64s(self, values: list[float], fixed: int | None = None) -> None:
        if fixed is None:
            self.u32(len(values))
        elif len(values) != fixed:
            raise ValueError(f"expected {fixed} values, got {len(values)}")
        if values:
            self._put(f"{len(values)}d", *values)

    def getvalue(self) -> bytes:
        return b"".join(self._parts)


class Reader:
    def __init__(self, data: Any) -> None:
        self._buf = memoryview(data).cast("B")
        if self._buf[:2].tobytes() != _HEADER[:2]:
            raise ProtocolError("not little-endian CDR (bad encapsulation header)")
        self._pos = 4

    def _take(self, fmt: str) -> tuple[Any, ...]:
        size = struct.calcsize("<" + fmt[-1])
        self._pos += -(self._pos - 4) % size
        n = struct.calcsize("<" + fmt)
        if self._pos + n > len(self._buf):
            raise ProtocolError("CDR message ends early")
        out = struct.unpack_from("<" + fmt, self._buf, self._pos)
        self._pos += n
        return out

    def time(self) -> int:
        sec, nsec = self._take("i")[0], self._take("I")[0]
        return int(sec) * 1_000_000_000 + int(nsec)

    def u32(self) -> int:
        return int(self._take("I")[0])

    def octets(self) -> memoryview:
        n = self.u32()
        if self._pos + n > len(self._buf):
            raise ProtocolError("CDR sequence runs past the message")
        out = self._buf[self._pos : self._pos + n]
        self._pos += n
        return out

    def string(self) -> str:
        raw = self.octets()
        if not raw or raw[-1] != 0:
            raise ProtocolError("CDR string is not NUL-terminated")
        try:
            return raw[:-1].tobytes().decode()
        except UnicodeDecodeError as exc:
            raise ProtocolError(f"CDR string is not UTF-8: {exc}") from None

    def f64s(self, fixed: int | None = None) -> list[float]:
        n = self.u32() if fixed is None else fixed
        if n > len(self._buf):
            raise ProtocolError("CDR array longer than the message")
        return [float(v) for v in self._take(f"{n}d")] if n else []


def encode_compressed_image(t_ns: int, frame_id: str, data: Any, fmt: str) -> bytes:
    w = Writer()
    w.time(t_ns)
    w.string(frame_id)
    w.octets(data)
    w.string(fmt)
    return w.getvalue()


def decode_compressed_image(raw: Any) -> dict[str, Any]:
    r = Reader(raw)
    return {"timestamp": r.time(), "frame_id": r.string(), "data": r.octets(), "format": r.string()}


def encode_raw_image(
    t_ns: int, frame_id: str, width: int, height: int, encoding: str, step: int, data: Any
) -> bytes:
    w = Writer()
    w.time(t_ns)
    w.string(frame_id)
    w.u32(width)
    w.u32(height)
    w.string(encoding)
    w.u32(step)
    w.octets(data)
    return w.getvalue()


def decode_raw_image(raw: Any) -> dict[str, Any]:
    r = Reader(raw)
    out: dict[str, Any] = {"timestamp": r.time(), "frame_id": r.string()}
    out["width"], out["height"] = r.u32(), r.u32()
    out["encoding"], out["step"], out["data"] = r.string(), r.u32(), r.octets()
    if out["step"] * out["height"] != len(out["data"]):
        raise ProtocolError("raw image data is not step x height bytes")
    return out


def encode_calibration(t_ns: int, frame_id: str, intr: Intrinsics) -> bytes:
    w = Writer()
    w.time(t_ns)
    w.string(frame_id)
    w.u32(intr.width)
    w.u32(intr.height)
    w.string(intr.model)
    write_pinhole(w, intr)
    return w.getvalue()


def encode_frame_transform(
    t_ns: int,
    parent: str,
    child: str,
    translation: tuple[float, float, float],
    rotation: tuple[float, float, float, float],
) -> bytes:
    """``FrameTransform``: the pose of *child* in *parent*, rotation as a quaternion x y z w."""
    w = Writer()
    w.time(t_ns)
    w.string(parent)
    w.string(child)
    w.f64s([float(v) for v in (*translation, *rotation)], fixed=7)
    return w.getvalue()


def encode_point_cloud(t_ns: int, frame_id: str, points: Any, rgb: Any) -> bytes:
    """Foxglove ``PointCloud``: float32 ``x y z`` then uint8 ``red green blue alpha`` per point
    (16 bytes), in *frame_id* (identity pose)."""
    packed = pack_points(points, rgb)
    w = Writer()
    w.time(t_ns)
    w.string(frame_id)
    w.f64s([0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0], fixed=7)  # position, orientation
    w.u32(16)
    fields = [("x", 0, 7), ("y", 4, 7), ("z", 8, 7)]
    fields += [("red", 12, 1), ("green", 13, 1), ("blue", 14, 1), ("alpha", 15, 1)]
    w.u32(len(fields))
    for name, offset, kind in fields:
        w.string(name)
        w.u32(offset)
        w.u8(kind)
    w.octets(packed.data)
    return w.getvalue()


def pack_points(points: Any, rgb: Any) -> Any:
    """Points (N, 3) float32 metres and colors (N, 3) uint8 RGB as (N, 16) bytes: ``x y z``
    little-endian float32, then ``red green blue alpha`` (opaque)."""
    import numpy as np

    pts = np.asarray(points, "<f4").reshape(-1, 3)
    col = np.asarray(rgb, np.uint8).reshape(-1, 3)
    packed = np.empty((len(pts), 16), np.uint8)
    packed[:, :12] = np.ascontiguousarray(pts).view(np.uint8).reshape(-1, 12)
    packed[:, 12:15] = col
    packed[:, 15] = 255
    return packed


def write_pinhole(w: Writer, intr: Intrinsics) -> None:
    """``D`` (a sequence), then ``K`` (3x3), ``R`` (identity) and ``P`` (3x4) of a pinhole camera,
    in the order both ``CameraCalibration`` and ``sensor_msgs/CameraInfo`` hold them."""
    w.f64s(list(intr.distortion))
    w.f64s([intr.fx, 0.0, intr.cx, 0.0, intr.fy, intr.cy, 0.0, 0.0, 1.0], 9)
    w.f64s([1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0], 9)
    w.f64s([intr.fx, 0.0, intr.cx, 0.0, 0.0, intr.fy, intr.cy, 0.0, 0.0, 0.0, 1.0, 0.0], 12)


def decode_calibration(raw: Any) -> tuple[int, str, Intrinsics]:
    r = Reader(raw)
    t, frame_id = r.time(), r.string()
    width, height, model = r.u32(), r.u32(), r.string()
    d = r.f64s()
    k = r.f64s(9)
    r.f64s(9)
    r.f64s(12)
    try:
        intr = Intrinsics(
            width=width,
            height=height,
            fx=k[0],
            fy=k[4],
            cx=k[2],
            cy=k[5],
            distortion=tuple(d),
            model=model,
        )
    except UsageError as exc:  # zero sizes, non-positive focal lengths
        raise ProtocolError(f"bad calibration: {exc}") from None
    return t, frame_id, intr
