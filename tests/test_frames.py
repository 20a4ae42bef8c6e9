import dataclasses

import numpy as np
import pytest

from rgbdcast import Body, Frame, HandState, Intrinsics, Joint, JointType, StreamKind, UsageError
from rgbdcast.frames import BONES, JOINT_NAMES, MAX_BODIES, Encoded


def _body(tid: int = 1) -> Body:
    return Body(
        tracking_id=tid,
        joints=tuple(Joint(type=j, position=(0.0, 0.0, 2.0)) for j in JointType),
    )


def test_joint_names_follow_the_sdk_order() -> None:
    assert JOINT_NAMES[:4] == ("SpineBase", "SpineMid", "Neck", "Head")
    assert JOINT_NAMES[20:] == (
        "SpineShoulder",
        "HandTipLeft",
        "ThumbLeft",
        "HandTipRight",
        "ThumbRight",
    )
    assert len(JOINT_NAMES) == 25
    assert len(BONES) == 24
    # every joint is on the skeleton
    assert {j for bone in BONES for j in bone} == set(JointType)


def test_frame_is_immutable_and_owns_a_read_only_buffer() -> None:
    arr = np.zeros((424, 512), np.uint16)
    f = Frame(device_id="d", kind="depth", seq=3, data=arr)
    assert f.kind is StreamKind.depth and f.shape == (424, 512) and f.dtype == "<u2"
    assert f.units == "mm"
    with pytest.raises(dataclasses.FrozenInstanceError):
        f.seq = 4  # type: ignore[misc]
    with pytest.raises(ValueError):
        arr[0, 0] = 1


@pytest.mark.parametrize(
    "kind,data",
    [
        ("depth", np.zeros((4, 4), np.uint8)),
        ("depth", np.zeros((4, 4, 3), np.uint16)),
        ("color", np.zeros((4, 4), np.uint8)),
        ("color", np.zeros((4, 4, 2), np.uint8)),
        ("infrared", np.zeros((4, 4), np.float32)),
        ("body", (object(),)),
        ("body", tuple(_body(i) for i in range(MAX_BODIES + 1))),
    ],
)
def test_frame_rejects_data_of_the_wrong_shape(kind: str, data: object) -> None:
    with pytest.raises(UsageError):
        Frame(device_id="d", kind=kind, seq=0, data=data)  # type: ignore[arg-type]


def test_frame_rejects_unknown_kind_and_missing_id() -> None:
    with pytest.raises(ValueError):
        Frame(device_id="d", kind="thermal", seq=0, data=np.zeros((2, 2), np.uint16))  # type: ignore[arg-type]
    with pytest.raises(UsageError):
        Frame(device_id="", kind="depth", seq=0, data=np.zeros((2, 2), np.uint16))


def test_body_needs_25_joints_in_order() -> None:
    joints = tuple(Joint(type=j, position=(0.0, 0.0, 1.0)) for j in JointType)
    with pytest.raises(UsageError):
        Body(tracking_id=1, joints=joints[:24])
    with pytest.raises(UsageError):
        Body(tracking_id=1, joints=(joints[1], joints[0], *joints[2:]))
    body = Body(tracking_id=7, joints=joints, right_hand=3)  # type: ignore[arg-type]
    assert body.right_hand is HandState.Closed
    assert body.joint("Head").type is JointType.Head


def test_intrinsics_round_trip_and_projection() -> None:
    intr = Intrinsics(width=512, height=424, fx=365.0, fy=365.0, cx=256.0, cy=212.0)
    assert Intrinsics.from_dict(intr.to_dict()) == intr
    assert intr.project(0.0, 0.0, 2.0) == (256.0, 212.0)
    u, v = intr.project(1.0, 1.0, 2.0)
    assert u > 256 and v < 212  # +x right, +y up
    with pytest.raises(UsageError):
        Intrinsics(width=0, height=1, fx=1, fy=1, cx=0, cy=0)
    with pytest.raises(UsageError):
        Intrinsics.from_dict({"width": 1})


def _jpeg_frame(decodes: list[int], shape: tuple[int, ...] = (16, 24, 3)) -> Frame:
    simplejpeg = pytest.importorskip("simplejpeg")
    img = np.full((16, 24, 3), 77, np.uint8)
    payload = simplejpeg.encode_jpeg(img, colorspace="BGR")

    def decode(b: bytes) -> np.ndarray:
        decodes.append(1)
        return np.asarray(simplejpeg.decode_jpeg(b, colorspace="BGR"))

    enc = Encoded(codec="jpeg", payload=payload, shape=shape, dtype="|u1", decode=decode)
    return Frame(device_id="cam", kind=StreamKind.color, seq=3, encoded=enc)


def test_a_source_encoded_frame_decodes_once_and_only_when_read() -> None:
    decodes: list[int] = []
    frame = _jpeg_frame(decodes)
    assert frame.shape == (16, 24, 3) and frame.dtype == "|u1" and not frame.decoded
    later = frame.replace(seq=4, host_time_ns=9)
    assert later.seq == 4 and not later.decoded and later.encoded is frame.encoded
    assert decodes == []
    arr = frame.array
    assert arr.shape == (16, 24, 3) and abs(int(arr.mean()) - 77) <= 2
    assert not arr.flags.writeable and frame.decoded and frame.data is arr
    assert decodes == [1]  # the second read is the same array
    assert not later.decoded  # each frame decodes its own, when read
    with pytest.raises(dataclasses.FrozenInstanceError):
        frame.data = arr  # type: ignore[misc]


def test_a_source_encoded_frame_checks_what_it_decodes_to() -> None:
    frame = _jpeg_frame([], shape=(16, 25, 3))  # the payload decodes to 16x24
    assert frame.shape == (16, 25, 3)
    with pytest.raises(UsageError, match="decoded to"):
        _ = frame.array
    with pytest.raises(UsageError, match="HxWx3/4"):
        _jpeg_frame([], shape=(16, 24))
    good = _jpeg_frame([])
    with pytest.raises(UsageError, match="needs data"):
        Frame(device_id="cam", kind=StreamKind.depth, seq=0)
    with pytest.raises(UsageError, match="encoded image"):
        Frame(
            device_id="cam",
            kind=StreamKind.color,
            seq=0,
            data=np.zeros((8, 8, 3), np.uint8),
            encoded=good.encoded,
        )
    with pytest.raises(UsageError, match="Body values"):
        Frame(device_id="cam", kind=StreamKind.body, seq=0, data=(), encoded=good.encoded)
