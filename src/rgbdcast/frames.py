"""Immutable value types: :class:`Frame`, :class:`StreamKind`, :class:`Body`, :class:`Joint`,
:class:`Intrinsics`.

A ``Frame`` is born in a device adapter and never changes afterwards: its numpy buffer is marked
read-only when the frame is made (the frame takes ownership of the array it is given).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import UsageError

__all__ = [
    "BONES",
    "JOINT_NAMES",
    "MAX_BODIES",
    "Body",
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
    """

    device_id: str
    kind: StreamKind
    seq: int
    data: FrameData
    device_time_ns: int = 0
    host_time_ns: int = 0
    frameset_id: int = 0
    units: str = ""
    intrinsics: Intrinsics | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        kind = StreamKind(self.kind)
        object.__setattr__(self, "kind", kind)
        if not self.device_id:
            raise UsageError("a frame needs a device id")
        if self.seq < 0:
            raise UsageError("sequence numbers start at 0")
        if not self.units:
            object.__setattr__(self, "units", _DEFAULT_UNITS[kind])
        if kind is StreamKind.body:
            bodies = tuple(self.data)  # type: ignore[arg-type]
            if len(bodies) > MAX_BODIES:
                raise UsageError(f"at most {MAX_BODIES} bodies per frame, got {len(bodies)}")
            if not all(isinstance(b, Body) for b in bodies):
                raise UsageError("body frames hold Body values")
            object.__setattr__(self, "data", bodies)
            return
        arr = self.data
        if not isinstance(arr, np.ndarray):
            raise UsageError(f"{kind} frames hold numpy arrays, got {type(arr).__name__}")
        if kind is StreamKind.color:
            if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] not in (3, 4):
                raise UsageError(f"color frames are HxWx3/4 uint8, got {arr.shape} {arr.dtype}")
        elif arr.dtype != np.uint16 or arr.ndim != 2:
            raise UsageError(f"{kind} frames are HxW uint16, got {arr.shape} {arr.dtype}")
        if arr.flags.writeable:
            arr.flags.writeable = False

    @property
    def shape(self) -> tuple[int, ...]:
        if isinstance(self.data, np.ndarray):
            return tuple(self.data.shape)
        return (len(self.data),)

    @property
    def dtype(self) -> str:
        if isinstance(self.data, np.ndarray):
            return self.data.dtype.str
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
