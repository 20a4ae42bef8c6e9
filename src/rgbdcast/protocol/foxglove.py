"""Frames as Foxglove's well-known messages (``foxglove.messages``, protobuf-encoded by the SDK).

How this works: pure conversions, no I/O. Each builds one message of the ``foxglove-sdk``
package (imported when first needed; it is the ``[foxglove]`` extra) from our value types:
images as sent or raw, a stream's ``CameraCalibration``, a colored ``PointCloud``, a body frame
as a ``SceneUpdate`` (one entity per body, spheres for joints and a ``LINE_LIST`` for bones, in
the depth camera's optical frame), and ``FrameTransforms``. The live Foxglove outlet and
``rgbdcast record`` use the same functions, so a file and a live server look the same.
"""

from __future__ import annotations

import importlib
import math
from typing import Any

import numpy as np

from ..errors import UsageError
from ..frames import BONES, Body, Intrinsics, TrackingState
from .cdr import pack_points

__all__ = [
    "JOINT_RADIUS_M",
    "BODY_LIFETIME_S",
    "body_entity_id",
    "bodies_update",
    "camera_calibration",
    "compressed_image",
    "fox",
    "have_sdk",
    "schema_of",
    "sdk_module",
    "frame_transforms",
    "point_cloud",
    "raw_image",
    "timestamp",
]

JOINT_RADIUS_M = 0.02
"""A joint's sphere radius (its diameter is the sphere's size: 4 cm)."""
BODY_LIFETIME_S = 1.0
"""How long a body stays on screen without an update (a stream that stops leaves nothing)."""

_TRACKED = (0.2, 0.9, 0.3, 1.0)
_INFERRED = (1.0, 0.85, 0.1, 1.0)


def sdk_module(name: str) -> Any:
    """A module of the Foxglove SDK, or a one-line error naming the extra to install."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise UsageError(
            "Foxglove support needs the foxglove-sdk package: pip install 'rgbdcast[foxglove]'"
        ) from exc


def fox() -> Any:
    """The ``foxglove.messages`` module (:func:`sdk_module`)."""
    return sdk_module("foxglove.messages")


def have_sdk() -> bool:
    """Whether ``foxglove-sdk`` is installed (the ``[foxglove]`` extra)."""
    try:
        fox()
    except UsageError:
        return False
    return True


def schema_of(message: Any) -> tuple[str, str, bytes]:
    """A message's schema as an MCAP channel needs it: name, encoding (``protobuf``) and the
    serialized ``FileDescriptorSet``."""
    schema = type(message).get_schema()
    return (schema.name, schema.encoding, bytes(schema.data))


def timestamp(t_ns: int) -> Any:
    sec, nsec = divmod(int(t_ns), 1_000_000_000)
    return fox().Timestamp(sec=sec, nsec=nsec)


def compressed_image(t_ns: int, frame_id: str, data: Any, fmt: str = "jpeg") -> Any:
    """``CompressedImage`` holding *data* (the stream's own JPEG) unchanged."""
    return fox().CompressedImage(
        timestamp=timestamp(t_ns), frame_id=frame_id, data=_bytes(data), format=fmt
    )


def compressed_video(t_ns: int, frame_id: str, data: Any, fmt: str) -> Any:
    """``CompressedVideo`` holding one Annex B access unit (*fmt* ``h264`` or ``h265``)."""
    return fox().CompressedVideo(
        timestamp=timestamp(t_ns), frame_id=frame_id, data=_bytes(data), format=fmt
    )


def raw_image(t_ns: int, frame_id: str, image: np.ndarray, encoding: str) -> Any:
    """``RawImage`` of a 16-bit image (``16UC1`` depth, ``mono16`` infrared), little-endian."""
    arr = np.ascontiguousarray(image, dtype="<u2")
    h, w = arr.shape[:2]
    return fox().RawImage(
        timestamp=timestamp(t_ns),
        frame_id=frame_id,
        width=w,
        height=h,
        encoding=encoding,
        step=w * 2,
        data=arr.tobytes(),
    )


def camera_calibration(t_ns: int, frame_id: str, intr: Intrinsics) -> Any:
    """``CameraCalibration`` of a pinhole camera with its distortion (no rectification)."""
    return fox().CameraCalibration(
        timestamp=timestamp(t_ns),
        frame_id=frame_id,
        width=intr.width,
        height=intr.height,
        distortion_model=intr.model,
        D=[float(d) for d in intr.distortion],
        K=[intr.fx, 0.0, intr.cx, 0.0, intr.fy, intr.cy, 0.0, 0.0, 1.0],
        R=[1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0],
        P=[intr.fx, 0.0, intr.cx, 0.0, 0.0, intr.fy, intr.cy, 0.0, 0.0, 0.0, 1.0, 0.0],
    )


def point_cloud(t_ns: int, frame_id: str, points: np.ndarray, rgb: np.ndarray) -> Any:
    """``PointCloud``: float32 ``x y z`` (metres) then uint8 ``red green blue alpha``, 16 bytes
    a point, in *frame_id* (identity pose), as ``record`` writes it."""
    m = fox()
    f32, u8 = m.PackedElementFieldNumericType.Float32, m.PackedElementFieldNumericType.Uint8
    fields = [m.PackedElementField(name=n, offset=4 * i, type=f32) for i, n in enumerate("xyz")]
    fields += [
        m.PackedElementField(name=n, offset=12 + i, type=u8)
        for i, n in enumerate(("red", "green", "blue", "alpha"))
    ]
    return m.PointCloud(
        timestamp=timestamp(t_ns),
        frame_id=frame_id,
        pose=_identity(),
        point_stride=16,
        fields=fields,
        data=pack_points(points, rgb).tobytes(),
    )


def body_entity_id(body: Body) -> str:
    return f"body-{body.tracking_id}"


def bodies_update(t_ns: int, frame_id: str, bodies: tuple[Body, ...]) -> Any:
    """A ``SceneUpdate`` that replaces every body shown with *bodies*: first a deletion of all
    entities, then one entity per body (id ``body-<tracking id>``, the tracking id also in its
    metadata) with a sphere per tracked or inferred joint and a ``LINE_LIST`` of the bones whose
    two joints are known. Kinect camera space has y up; the optical frame has y down."""
    m = fox()
    stamp = timestamp(t_ns)
    entities = []
    for body in bodies:
        known = [
            j.state is not TrackingState.NotTracked and all(map(math.isfinite, j.position))
            for j in body.joints
        ]
        xyz = [(j.position[0], -j.position[1], j.position[2]) for j in body.joints]
        size = m.Vector3(x=2 * JOINT_RADIUS_M, y=2 * JOINT_RADIUS_M, z=2 * JOINT_RADIUS_M)
        spheres = [
            m.SpherePrimitive(pose=_pose(p), size=size, color=_color(j.state))
            for p, j, k in zip(xyz, body.joints, known, strict=True)
            if k
        ]
        ends = [_point(xyz[i]) for a, b in BONES if known[a] and known[b] for i in (a, b)]
        lines = [
            m.LinePrimitive(
                type=m.LinePrimitiveLineType.LineList,
                pose=_identity(),
                thickness=0.015,
                points=ends,
                color=m.Color(r=0.9, g=0.9, b=0.9, a=1.0),
            )
        ]
        entities.append(
            m.SceneEntity(
                timestamp=stamp,
                frame_id=frame_id,
                id=body_entity_id(body),
                lifetime=m.Duration(sec=int(BODY_LIFETIME_S), nsec=0),
                frame_locked=True,
                metadata=[m.KeyValuePair(key="tracking_id", value=str(body.tracking_id))],
                spheres=spheres,
                lines=lines if ends else [],
            )
        )
    deletion = m.SceneEntityDeletion(timestamp=stamp, type=m.SceneEntityDeletionType.All)
    return m.SceneUpdate(deletions=[deletion], entities=entities)


Transform = tuple[str, str, tuple[float, float, float], tuple[float, float, float, float]]
"""``(parent, child, translation, rotation quaternion x y z w)``: the child's pose in the parent."""


def frame_transforms(t_ns: int, transforms: list[Transform]) -> Any:
    m = fox()
    stamp = timestamp(t_ns)
    return m.FrameTransforms(
        transforms=[
            m.FrameTransform(
                timestamp=stamp,
                parent_frame_id=parent,
                child_frame_id=child,
                translation=m.Vector3(x=float(t[0]), y=float(t[1]), z=float(t[2])),
                rotation=m.Quaternion(x=float(q[0]), y=float(q[1]), z=float(q[2]), w=float(q[3])),
            )
            for parent, child, t, q in transforms
        ]
    )


def _identity() -> Any:
    m = fox()
    return m.Pose(position=m.Vector3(x=0.0, y=0.0, z=0.0), orientation=m.Quaternion(w=1.0))


def _pose(p: tuple[float, float, float]) -> Any:
    m = fox()
    return m.Pose(position=m.Vector3(x=p[0], y=p[1], z=p[2]), orientation=m.Quaternion(w=1.0))


def _point(p: tuple[float, float, float]) -> Any:
    return fox().Point3(x=p[0], y=p[1], z=p[2])


def _color(state: TrackingState) -> Any:
    r, g, b, a = _TRACKED if state is TrackingState.Tracked else _INFERRED
    return fox().Color(r=r, g=g, b=b, a=a)


def _bytes(data: Any) -> bytes:
    return data if isinstance(data, bytes) else bytes(memoryview(data))
