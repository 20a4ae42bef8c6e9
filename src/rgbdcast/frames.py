"""Immutable value types: :class:`Frame`, :class:`StreamKind`, :class:`Body`, :class:`Joint`,
:class:`Intrinsics`.

A ``Frame`` is born in a device adapter and never changes afterwards: its numpy buffer is marked
read-only when the frame is made (the frame takes ownership of the array it is given).

A source that delivers its pixels already encoded (a webcam's MJPEG, a recording's JPEG) makes
the frame with ``encoded=Encoded(...)`` and no ``data``: the pixels are decoded the first time
``data`` (or ``array``) is read, and a publisher serving the same codec sends the source's bytes
as they are, so nobody decodes or re-encodes what only travels.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import UsageError

__all__ = [
    "BONES",
    "JOINT_NAMES",
    "MAX_BODIES",
    "Body",
    "Encoded",
    "Frame",
    "HandState",
    "Intrinsics",
    "Joint",
    "JointType",
    "StreamKind",
    "TrackingState",
]

MAX_BODIES = 6
"""A Kinect v2 tracks at most six bodies at once."""


class StreamKind(str, enum.Enum):
    """The kinds of stream a device can deliver."""

    color = "color"
    depth = "depth"
    infrared = "infrared"
    body = "body"

    def __str__(self) -> str:
        return self.value


class JointType(enum.IntEnum):
    """The 25 Kinect v2 joints, in the SDK's ``JointType`` order and with its names."""

    SpineBase = 0
    SpineMid = 1
    Neck = 2
    Head = 3
    ShoulderLeft = 4
    ElbowLeft = 5
    WristLeft = 6
    HandLeft = 7
    ShoulderRight = 8
    ElbowRight = 9
    WristRight = 10
    HandRight = 11
    HipLeft = 12
    KneeLeft = 13
    AnkleLeft = 14
    FootLeft = 15
    HipRight = 16
    KneeRight = 17
    AnkleRight = 18
    FootRight = 19
    SpineShoulder = 20
    HandTipLeft = 21
    ThumbLeft = 22
    HandTipRight = 23
    ThumbRight = 24


JOINT_NAMES: tuple[str, ...] = tuple(j.name for j in JointType)

J = JointType
BONES: tuple[tuple[JointType, JointType], ...] = (
    (J.Head, J.Neck),
    (J.Neck, J.SpineShoulder),
    (J.SpineShoulder, J.SpineMid),
    (J.SpineMid, J.SpineBase),
    (J.SpineShoulder, J.ShoulderRight),
    (J.SpineShoulder, J.ShoulderLeft),
    (J.SpineBase, J.HipRight),
    (J.SpineBase, J.HipLeft),
    (J.ShoulderRight, J.ElbowRight),
    (J.ElbowRight, J.WristRight),
    (J.WristRight, J.HandRight),
    (J.HandRight, J.HandTipRight),
    (J.WristRight, J.ThumbRight),
    (J.ShoulderLeft, J.ElbowLeft),
    (J.ElbowLeft, J.WristLeft),
    (J.WristLeft, J.HandLeft),
    (J.HandLeft, J.HandTipLeft),
    (J.WristLeft, J.ThumbLeft),
    (J.HipRight, J.KneeRight),
    (J.KneeRight, J.AnkleRight),
    (J.AnkleRight, J.FootRight),
    (J.HipLeft, J.KneeLeft),
    (J.KneeLeft, J.AnkleLeft),
    (J.AnkleLeft, J.FootLeft),
)
"""The 24 bones of the Kinect v2 skeleton as pairs of joints (for drawing)."""
del J


class TrackingState(enum.IntEnum):
    """How well a joint is tracked (the SDK's ``TrackingState``)."""

    NotTracked = 0
    Inferred = 1
    Tracked = 2


class HandState(enum.IntEnum):
    """The SDK's ``HandState``."""

    Unknown = 0
    NotTracked = 1
    Open = 2
    Closed = 3
    Lasso = 4


@dataclass(frozen=True, slots=True, kw_only=True)
class Intrinsics:
    """Pinhole camera intrinsics in pixels, plus optional distortion coefficients."""

    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float
    distortion: tuple[float, ...] = ()
    model: str = "plumb_bob"

    def __post_init__(self) -> None:
        if self.width <= 0 or self.height <= 0:
            raise UsageError(f"intrinsics need a positive size, got {self.width}x{self.height}")
        if self.fx <= 0 or self.fy <= 0:
            raise UsageError("intrinsics need positive focal lengths")
        object.__setattr__(self, "distortion", tuple(float(d) for d in self.distortion))

    def to_dict(self) -> dict[str, Any]:
        return {
            "width": self.width,
            "height": self.height,
            "fx": self.fx,
            "fy": self.fy,
            "cx": self.cx,
            "cy": self.cy,
            "distortion": list(self.distortion),
            "model": self.model,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Intrinsics:
        try:
            return cls(
                width=int(d["width"]),
                height=int(d["height"]),
                fx=float(d["fx"]),
                fy=float(d["fy"]),
                cx=float(d["cx"]),
                cy=float(d["cy"]),
                distortion=tuple(float(x) for x in d.get("distortion", ())),
                model=str(d.get("model", "plumb_bob")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise UsageError(f"bad intrinsics: {exc}") from exc

    def project(self, x: float, y: float, z: float) -> tuple[float, float]:
        """Project a camera-space point (metres, Kinect convention: +y up) to pixels."""
        return (self.fx * x / z + self.cx, self.cy - self.fy * y / z)


@dataclass(frozen=True, slots=True, kw_only=True)
class Joint:
    """One joint: camera-space position (metres), tracking state, and its pixel projections."""

    type: JointType
    position: tuple[float, float, float]
    state: TrackingState = TrackingState.Tracked
    color_xy: tuple[float, float] = (float("nan"), float("nan"))
    depth_xy: tuple[float, float] = (float("nan"), float("nan"))

    def __post_init__(self) -> None:
        object.__setattr__(self, "type", JointType(self.type))
        object.__setattr__(self, "state", TrackingState(self.state))
        if len(self.position) != 3 or len(self.color_xy) != 2 or len(self.depth_xy) != 2:
            raise UsageError("a joint needs a 3-D position and 2-D projections")

    @property
    def name(self) -> str:
        return self.type.name


@dataclass(frozen=True, slots=True, kw_only=True)
class Body:
    """One tracked body: its tracking id, 25 joints in ``JointType`` order, and hand states."""

    tracking_id: int
    joints: tuple[Joint, ...]
    left_hand: HandState = HandState.Unknown
    right_hand: HandState = HandState.Unknown

    def __post_init__(self) -> None:
        joints = tuple(self.joints)
        if len(joints) != len(JointType):
            raise UsageError(f"a body needs {len(JointType)} joints, got {len(joints)}")
        for i, joint in enumerate(joints):
            if joint.type != i:
                raise UsageError(f"joint {i} must be {JointType(i).name}, got {joint.type.name}")
        if not 0 <= self.tracking_id < 2**64:
            raise UsageError("tracking_id must fit in 64 unsigned bits")
        object.__setattr__(self, "joints", joints)
        object.__setattr__(self, "left_hand", HandState(self.left_hand))
        object.__setattr__(self, "right_hand", HandState(self.right_hand))

    def joint(self, jt: JointType | str) -> Joint:
        """The joint of the given type (or name)."""
        return self.joints[JointType[jt] if isinstance(jt, str) else int(jt)]


FrameData = np.ndarray | tuple[Body, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Encoded:
    """An image as its source delivered it, already encoded.

    *codec* is the registry name of its encoding (``"jpeg"``), *payload* its bytes, *shape* and
    *dtype* (a numpy dtype string) what it decodes to, and *decode* turns the payload into that
    array (called at most once per frame, only if someone reads the pixels). A video unit
    (``h264``, ``hevc``) has its number in its source's chain, *au*: a gap in it means the units
    in between are missing.
    """

    codec: str
    payload: bytes
    shape: tuple[int, ...]
    dtype: str
    decode: Callable[[bytes], np.ndarray] = field(repr=False, compare=False)
    au: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", tuple(int(n) for n in self.shape))
        if not self.payload:
            raise UsageError("an encoded image needs a payload")


_DEFAULT_UNITS = {
    StreamKind.depth: "mm",
    StreamKind.infrared: "intensity",
    StreamKind.color: "bgr8",
    StreamKind.body: "m",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Frame:
    """One frame of one stream of one device.

    ``data`` is a numpy array (color: ``H x W x 3`` BGR or ``H x W x 4`` BGRA uint8; depth:
    ``H x W`` uint16 millimetres; infrared: ``H x W`` uint16) or, for body frames, a tuple of
    at most six :class:`Body`. Times are integers in nanoseconds. ``frameset_id`` is shared by
    the frames of one device captured together.

    >>> import numpy as np
    >>> f = Frame(device_id="cam", kind=StreamKind.depth, seq=0,
    ...           data=np.zeros((424, 512), np.uint16))
    >>> f.shape, f.units
    ((424, 512), 'mm')

    A frame made with ``encoded=`` and no ``data`` decodes its pixels on the first read of
    ``data``; ``shape`` and ``dtype`` come from the :class:`Encoded` without decoding. Use
    :meth:`replace` (not :func:`dataclasses.replace`) to change fields without decoding.
    """

    device_id: str
    kind: StreamKind
    seq: int
    data: FrameData = None  # type: ignore[assignment]  # only with encoded=: decoded when read
    device_time_ns: int = 0
    host_time_ns: int = 0
    frameset_id: int = 0
    units: str = ""
    intrinsics: Intrinsics | None = None
    calibration: str | None = field(default=None, compare=False)
    """The revision of the device calibration this frame was taken under (from the header)."""
    extra: dict[str, Any] = field(default_factory=dict, compare=False)
    encoded: Encoded | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        kind = StreamKind(self.kind)
        object.__setattr__(self, "kind", kind)
        if not self.device_id:
            raise UsageError("a frame needs a device id")
        if self.seq < 0:
            raise UsageError("sequence numbers start at 0")
        if not self.units:
            object.__setattr__(self, "units", _DEFAULT_UNITS[kind])
        raw = _DATA_SLOT.__get__(self)
        if kind is StreamKind.body:
            if self.encoded is not None:
                raise UsageError("body frames hold Body values, not an encoded image")
            bodies = tuple(raw)
            if len(bodies) > MAX_BODIES:
                raise UsageError(f"at most {MAX_BODIES} bodies per frame, got {len(bodies)}")
            if not all(isinstance(b, Body) for b in bodies):
                raise UsageError("body frames hold Body values")
            object.__setattr__(self, "data", bodies)
            return
        if raw is None:
            if self.encoded is None:
                raise UsageError(f"a {kind} frame needs data (or encoded=)")
            _check_image(kind, self.encoded.shape, np.dtype(self.encoded.dtype))
            _DATA_SLOT.__set__(self, _PENDING)
            return
        if not isinstance(raw, np.ndarray):
            raise UsageError(f"{kind} frames hold numpy arrays, got {type(raw).__name__}")
        _check_image(kind, raw.shape, raw.dtype)
        enc = self.encoded
        if enc is not None and not _fits(raw, enc):
            raise UsageError(
                f"encoded image {enc.shape} {enc.dtype} but data {raw.shape} {raw.dtype.str}"
            )
        if raw.flags.writeable:
            raw.flags.writeable = False

    @property
    def decoded(self) -> bool:
        """Whether the pixels are in memory (False until a source-encoded frame is read)."""
        return _DATA_SLOT.__get__(self) is not _PENDING

    def replace(self, **changes: Any) -> Frame:
        """A copy with *changes*; a source-encoded frame not yet decoded stays so."""
        if "data" not in changes and not self.decoded:
            changes["data"] = None
        return dataclasses.replace(self, **changes)

    @property
    def shape(self) -> tuple[int, ...]:
        raw = _DATA_SLOT.__get__(self)
        if isinstance(raw, np.ndarray):
            return tuple(raw.shape)
        if raw is _PENDING:
            assert self.encoded is not None
            return self.encoded.shape
        return (len(raw),)

    @property
    def dtype(self) -> str:
        raw = _DATA_SLOT.__get__(self)
        if isinstance(raw, np.ndarray):
            return raw.dtype.str
        if raw is _PENDING:
            assert self.encoded is not None
            return np.dtype(self.encoded.dtype).str
        return "body"

    @property
    def array(self) -> np.ndarray:
        """The image as a numpy array (raises for body frames)."""
        if not isinstance(self.data, np.ndarray):
            raise UsageError("body frames have no image; use .bodies")
        return self.data

    @property
    def bodies(self) -> tuple[Body, ...]:
        """The bodies of a body frame (raises for image frames)."""
        if isinstance(self.data, np.ndarray):
            raise UsageError(f"{self.kind} frames have no bodies; use .array")
        return self.data


def _check_image(kind: StreamKind, shape: tuple[int, ...], dtype: np.dtype[Any]) -> None:
    if kind is StreamKind.color:
        if dtype != np.uint8 or len(shape) != 3 or shape[2] not in (3, 4):
            raise UsageError(f"color frames are HxWx3/4 uint8, got {tuple(shape)} {dtype}")
    elif dtype != np.uint16 or len(shape) != 2:
        raise UsageError(f"{kind} frames are HxW uint16, got {tuple(shape)} {dtype}")


def _fits(arr: np.ndarray, enc: Encoded) -> bool:
    """Whether *arr* is the image *enc* announced (shape and dtype)."""
    return tuple(arr.shape) == enc.shape and arr.dtype.str == np.dtype(enc.dtype).str


_PENDING: Any = type("_Pending", (), {"__repr__": lambda self: "<not decoded>"})()
_DATA_SLOT: Any = Frame.__dict__["data"]  # the slot behind Frame.data


class _LazyData:
    """``Frame.data``: the slot, except that a source-encoded frame decodes on first read.

    Two threads reading at once may both decode; both get equal pixels and one result stays.
    """

    def __get__(self, obj: Frame | None, owner: type | None = None) -> Any:
        if obj is None:
            return self
        value = _DATA_SLOT.__get__(obj)
        if value is _PENDING:
            enc = obj.encoded
            assert enc is not None
            value = enc.decode(enc.payload)
            if not isinstance(value, np.ndarray) or not _fits(value, enc):
                got = getattr(value, "shape", type(value).__name__)
                raise UsageError(f"{enc.codec} image decoded to {got}, not {enc.shape}")
            value.flags.writeable = False
            _DATA_SLOT.__set__(obj, value)
        return value

    def __set__(self, obj: Frame, value: Any) -> None:
        _DATA_SLOT.__set__(obj, value)


setattr(Frame, "data", _LazyData())  # noqa: B010  (mypy keeps seeing the field's type)
