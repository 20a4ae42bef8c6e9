"""``body``: a compact little-endian binary encoding of body frames, and a JSON form.

Payload: one byte version (1), one byte body count, then per body a packed record::

    u64 tracking_id, u8 left_hand, u8 right_hand,
    25 x (f32 x, y, z metres; f32 color u, v; f32 depth u, v; u8 tracking_state)

735 bytes a body, so a full six-body frame is 4,412 bytes.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..errors import CodecError
from ..frames import MAX_BODIES, Body, FrameData, HandState, Joint, JointType, StreamKind
from .base import Buffer, CodecInfo, register

__all__ = [
    "BODY_DTYPE",
    "BodyCodec",
    "bodies_from_json",
    "bodies_to_json",
    "float_from_json",
    "json_float",
]

_VERSION = 1
JOINT_DTYPE = np.dtype(
    [("pos", "<f4", 3), ("color", "<f4", 2), ("depth", "<f4", 2), ("state", "u1")]
)
BODY_DTYPE = np.dtype(
    [("id", "<u8"), ("left", "u1"), ("right", "u1"), ("joints", JOINT_DTYPE, (len(JointType),))]
)


def _to_records(bodies: tuple[Body, ...]) -> np.ndarray:
    rec = np.zeros(len(bodies), BODY_DTYPE)
    for i, body in enumerate(bodies):
        rec["id"][i] = body.tracking_id
        rec["left"][i] = body.left_hand
        rec["right"][i] = body.right_hand
        joints = rec["joints"][i]
        joints["pos"] = [j.position for j in body.joints]
        joints["color"] = [j.color_xy for j in body.joints]
        joints["depth"] = [j.depth_xy for j in body.joints]
        joints["state"] = [j.state for j in body.joints]
    return rec


def _from_records(rec: np.ndarray) -> tuple[Body, ...]:
    bodies = []
    for r in rec:
        joints = tuple(
            Joint(
                type=JointType(k),
                position=tuple(float(v) for v in j["pos"]),  # type: ignore[arg-type]
                color_xy=(float(j["color"][0]), float(j["color"][1])),
                depth_xy=(float(j["depth"][0]), float(j["depth"][1])),
                state=int(j["state"]),  # type: ignore[arg-type]
            )
            for k, j in enumerate(r["joints"])
        )
        bodies.append(
            Body(
                tracking_id=int(r["id"]),
                joints=joints,
                left_hand=HandState(int(r["left"])),
                right_hand=HandState(int(r["right"])),
            )
        )
    return tuple(bodies)


class BodyCodec:
    info = CodecInfo(
        "body",
        frozenset({StreamKind.body}),
        lossless=True,
        description="packed binary bodies (735 bytes a body)",
    )

    def encode(self, data: FrameData, params: dict[str, Any]) -> Buffer:
        bodies = tuple(data)  # type: ignore[arg-type]
        return bytes([_VERSION, len(bodies)]) + _to_records(bodies).tobytes()  # type: ignore[arg-type]

    def decode(self, payload: Buffer, shape: tuple[int, ...], dtype: str) -> FrameData:
        buf = memoryview(payload).cast("B")
        if len(buf) < 2 or buf[0] != _VERSION:
            raise CodecError("body payload lacks its version byte")
        count = buf[1]
        if count > MAX_BODIES or len(buf) != 2 + count * BODY_DTYPE.itemsize:
            raise CodecError(f"body payload of {len(buf)} bytes does not hold {count} bodies")
        if shape != (count,):
            raise CodecError(f"header announced {shape} bodies, payload holds {count}")
        try:
            return _from_records(np.frombuffer(buf, BODY_DTYPE, offset=2))
        except ValueError as exc:  # an invalid hand or tracking state byte
            raise CodecError(f"bad body payload: {exc}") from exc


def json_float(v: float) -> float | None:
    """JSON has no NaN or infinity: a coordinate that is not finite (a joint the SDK could not
    project returns -inf) becomes None, written as ``null``."""
    return v if math.isfinite(v) else None


def float_from_json(v: Any) -> float:
    """The inverse of :func:`json_float`: ``null`` reads back as NaN."""
    return float("nan") if v is None else float(v)


def bodies_to_json(bodies: tuple[Body, ...]) -> list[dict[str, Any]]:
    """Bodies as plain JSON-ready dicts (joint names as keys); coordinates that are not finite
    are None, so strict JSON parsers in any language read the result."""
    return [
        {
            "tracking_id": b.tracking_id,
            "left_hand": b.left_hand.name,
            "right_hand": b.right_hand.name,
            "joints": {
                j.name: {
                    "position": [json_float(v) for v in j.position],
                    "state": j.state.name,
                    "color_xy": [json_float(v) for v in j.color_xy],
                    "depth_xy": [json_float(v) for v in j.depth_xy],
                }
                for j in b.joints
            },
        }
        for b in bodies
    ]


def bodies_from_json(items: list[dict[str, Any]]) -> tuple[Body, ...]:
    """The inverse of :func:`bodies_to_json`."""

    return tuple(
        Body(
            tracking_id=int(b["tracking_id"]),
            left_hand=HandState[b["left_hand"]],
            right_hand=HandState[b["right_hand"]],
            joints=tuple(_joint_from_json(jt, b["joints"][jt.name]) for jt in JointType),
        )
        for b in items
    )


def _joint_from_json(jt: JointType, j: dict[str, Any]) -> Joint:
    from ..frames import TrackingState

    x, y, z = map(float_from_json, j["position"])
    cu, cv = map(float_from_json, j["color_xy"])
    du, dv = map(float_from_json, j["depth_xy"])
    return Joint(
        type=jt,
        position=(x, y, z),
        state=TrackingState[j["state"]],
        color_xy=(cu, cv),
        depth_xy=(du, dv),
    )


register(BodyCodec())
