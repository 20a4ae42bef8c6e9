"""Calibration over the wire, on real sockets: who/me, the calibration request, the revision in
each header, a calibration that changes while streaming, and refusals at both edges."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zmq

from rgbdcast import Client, MockDevice, ProtocolError, Server, StreamKind, UsageError
from rgbdcast.frames import Frame
from rgbdcast.framesets import FramesetSubscription
from rgbdcast.geometry import Calibration, point_cloud, ray_table
from rgbdcast.geometry.calibration import TABLE_DEPTH_TO_CAMERA
from rgbdcast.protocol.control import MessageType, make_msg

RECORD = [sys.executable, "-m", "rgbdcast", "record"]


def _control(endpoint: str, frames: list[bytes]) -> list[bytes]:
    sock = zmq.Context.instance().socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(endpoint)
    try:
        sock.send_multipart(frames)
        assert sock.poll(3000), "no reply"
        return sock.recv_multipart()
    finally:
        sock.close(0)


class TableMock(MockDevice):
    """A mock whose calibration carries an exact per-pixel table, as a Kinect v2's does; the
    table may be made to differ from the pinhole rays, so a test can see it is used."""

    def __init__(self, *args: Any, x_scale: float = 1.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        base = super().calibration()
        self._cal = Calibration(
            device_id=base.device_id,
            depth=base.depth,
            color=base.color,
            depth_to_color=base.depth_to_color,
            source="mock with a table",
            tables=(TABLE_DEPTH_TO_CAMERA,),
        )
        assert base.depth is not None
        table = ray_table(base.depth).copy()
        table[..., 0] *= x_scale
        self.table = table

    def calibration(self) -> Calibration:
        return self._cal

    def calibration_table(self, name: str) -> np.ndarray | None:
        return self.table if name == TABLE_DEPTH_TO_CAMERA else None

    def change_calibration(self, cal: Calibration) -> None:
        self._cal = cal
        self.on_calibration.send(self)


class BadCalibrationMock(MockDevice):
    def calibration(self) -> Calibration:
        base = super().calibration()
        assert base.color is not None
        # a calibration for another color resolution than the stream's
        from rgbdcast.devices.scene import scaled

        return Calibration(
            device_id=self.id,
            depth=base.depth,
            color=scaled(base.color, 1280, 720),
            depth_to_color=base.depth_to_color,
        )


@pytest.fixture
def served() -> Iterator[tuple[Server, str]]:
    srv = Server("127.0.0.1", announce=False, name="calib")
    srv.add_device(TableMock("cal0", fps=30))
    srv.add_device(BadCalibrationMock("bad0", fps=30, streams=["depth", "color"]))
    with srv:
        yield srv, f"tcp://127.0.0.1:{srv.port}"


def test_who_me_and_the_request_carry_the_calibration_and_refuse_a_bad_one(
    served: tuple[Server, str],
) -> None:
    srv, endpoint = served
    _, payload = _control(endpoint, [b"\x03"])
    devices = {d["id"]: d for d in json.loads(payload)["devices"]}
    good = devices["cal0"]["calibration"]
    assert Calibration.from_dict(good) == srv.devices[0].calibration()
    assert good["cameras"]["depth"]["frame_id"] == "cal0_depth_optical_frame"
    assert "calibration" not in devices["bad0"]
    assert "1280x720" in devices["bad0"]["calibration_error"]

    frames = _control(
        endpoint,
        make_msg(MessageType.calibration, {"device": "cal0", "tables": [TABLE_DEPTH_TO_CAMERA]}),
    )
    assert frames[0] == bytes([MessageType.calibration_reply]) and len(frames) == 3
    answer = json.loads(frames[1])
    meta = answer["tables"][TABLE_DEPTH_TO_CAMERA]
    assert meta == {"shape": [424, 512, 2], "dtype": "<f4", "part": 0}
    assert len(frames[2]) == 424 * 512 * 2 * 4  # ~1.7 MB: sent on request, never in who/me

    def error(payload: Any) -> str:
        kind, body = _control(endpoint, make_msg(MessageType.calibration, payload))
        assert kind == b"\x00"
        return str(json.loads(body)["reason"])

    assert "no device 'nope' here (devices: cal0, bad0)" in error({"device": "nope"})
    assert "needs" in error({})
    assert "has no table 'x'" in error({"device": "cal0", "tables": ["x"]})
    bad = json.loads(_control(endpoint, make_msg(MessageType.calibration, {"device": "bad0"}))[1])
    assert bad["calibration"] is None and "1280x720" in bad["error"]
    # the server kept serving through all of it
    assert _control(endpoint, [b"\x01"]) == [b"\x02"]


def test_a_client_uses_the_table_and_follows_a_calibration_that_changes(
    served: tuple[Server, str],
) -> None:
    srv, endpoint = served
    dev = next(d for d in srv.devices if d.id == "cal0")
    assert isinstance(dev, TableMock)
    with Client(endpoint, connect_immediately=True) as client:
        cal = client.calibration("cal0")
        assert cal == dev.calibration()
        with client.subscribe_frameset("cal0") as sets:
            frames = sets.get(timeout=5)
            assert {f.calibration for f in frames.values()} == {cal.revision}
            cloud = client.point_cloud(frames)
            table = client.calibration_table("cal0")
            assert table is not None and np.array_equal(table, dev.table)
            # the same cloud as computed locally from the same frames and table
            local = point_cloud(
                frames[StreamKind.depth].array, frames[StreamKind.color].array, cal, rays=dev.table
            )
            np.testing.assert_array_equal(cloud.points, local.points)

            # the sensor's host refines its calibration while streaming: the next frames name
            # the new revision and the client fetches it (and the new table) by itself
            dev.table = dev.table.copy()
            dev.table[..., 0] *= 2.0
            moved = Calibration(**{**_fields(cal), "source": "refined"})
            dev.change_calibration(moved)
            for _ in range(100):
                frames = sets.get(timeout=5)
                if frames[StreamKind.depth].calibration == moved.revision:
                    break
            else:
                raise AssertionError("no frame named the new calibration")
            cloud2 = client.point_cloud(frames)
            assert client.calibration("cal0").source == "refined"
            depth = frames[StreamKind.depth].array
            ref = point_cloud(depth, frames[StreamKind.color].array, moved, rays=dev.table)
            np.testing.assert_array_equal(cloud2.points, ref.points)
            full = client.point_cloud(frames, organized=True, keep_uncolored=True)
            assert full.mask is not None
            z = full.points[..., 2][full.mask]
            np.testing.assert_allclose(
                full.points[..., 0][full.mask] / z, dev.table[..., 0][full.mask], rtol=1e-5
            )


def _fields(cal: Calibration) -> dict[str, Any]:
    return {
        "device_id": cal.device_id,
        "depth": cal.depth,
        "color": cal.color,
        "depth_to_color": cal.depth_to_color,
        "depth_units": cal.depth_units,
        "source": cal.source,
        "tables": cal.tables,
    }


def test_without_a_calibration_a_point_cloud_says_why(served: tuple[Server, str]) -> None:
    _, endpoint = served
    with Client(endpoint, connect_immediately=True) as client:
        with client.subscribe_frameset("bad0") as sets:
            frames = sets.get(timeout=5)
            assert frames[StreamKind.depth].calibration is None
            with pytest.raises(UsageError, match="1280x720"):
                client.point_cloud(frames)
            other = sets.get(timeout=5)
        with pytest.raises(UsageError, match="not one frameset"):
            client.point_cloud([frames[StreamKind.depth], other[StreamKind.color]])
        assert client.frameset_mismatches == 1
        with pytest.raises(UsageError, match="needs a depth frame and a color frame"):
            client.point_cloud([frames[StreamKind.depth]])


def test_a_client_refuses_an_implausible_calibration_from_a_server() -> None:
    """A hand-made server (a real REP socket) that describes its device with a rotation that
    is no rotation: the client says so and counts it, and keeps working."""
    ctx = zmq.Context.instance()
    rep = ctx.socket(zmq.REP)
    rep.setsockopt(zmq.LINGER, 0)
    port = rep.bind_to_random_port("tcp://127.0.0.1")
    cal = MockDevice("evil0").calibration().to_dict()
    cal["depth_to_color"]["rotation"] = [[2, 0, 0], [0, 1, 0], [0, 0, 1]]
    me = {
        "version": 1,
        "name": "evil",
        "endpoints": {},
        "devices": [{"id": "evil0", "endpoints": {}, "streams": {}, "calibration": cal}],
    }
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            if rep.poll(50):
                rep.recv_multipart()
                rep.send_multipart(make_msg(MessageType.me, me))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        with Client(f"tcp://127.0.0.1:{port}", connect_immediately=True) as client:
            with pytest.raises(ProtocolError, match=r"invalid calibration for evil0.*orthonormal"):
                client.calibration("evil0")
            assert client.bad_calibrations == 1
            assert client.ping() is not None
    finally:
        stop.set()
        thread.join(2)
        rep.close(0)


class _FakeSub:
    def __init__(self, kind: StreamKind, ids: list[int]) -> None:
        self.kind = kind
        self.closed = False
        self._frames = [
            Frame(
                device_id="d",
                kind=kind,
                seq=i,
                frameset_id=i,
                data=np.zeros(
                    (4, 4) if kind is StreamKind.depth else (4, 4, 3),
                    np.uint16 if kind is StreamKind.depth else np.uint8,
                ),
            )
            for i in ids
        ]

    def get(self, timeout: float | None = None) -> Frame:
        if not self._frames:
            raise TimeoutError("none left")
        return self._frames.pop(0)

    def close(self) -> None:
        self.closed = True


def test_framesets_match_by_id_count_what_cannot_match_and_survive_a_restart() -> None:
    depth = _FakeSub(StreamKind.depth, [1, 2, 4, 5, 7, 2, 3])
    color = _FakeSub(StreamKind.color, [2, 3, 4, 6, 7, 1, 3])
    sets = FramesetSubscription(None, "d", [depth, color])
    got = []
    for _ in range(4):
        fs = sets.get(timeout=1)
        ids = {f.frameset_id for f in fs.values()}
        assert len(ids) == 1
        got.append(ids.pop())
    # 2, 4, 7, then the device restarted (ids from 1 again) and 3 matched
    assert got == [2, 4, 7, 3]
    assert sets.matched == 4
    assert sets.unmatched == {"depth": 3, "color": 3}


def test_the_calibration_is_recorded_for_foxglove_and_replayed(
    served: tuple[Server, str], tmp_path: Path
) -> None:
    """record writes the calibration (JSON, CameraCalibration with the optical frame ids, a
    FrameTransform between them, the table as an attachment); rosbags reads the Foxglove
    messages; a replay of the file serves the same calibration and table to a client."""
    from mcap.reader import make_reader
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    from rgbdcast.protocol import cdr
    from rgbdcast.record.replay import ReplayDevice

    srv, endpoint = served
    dev = next(d for d in srv.devices if d.id == "cal0")
    assert isinstance(dev, TableMock)
    out = tmp_path / "cal.mcap"
    res = subprocess.run(
        [*RECORD, endpoint, "--out", str(out), "--duration", "1.5", "--device", "cal0", "--points"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0, res.stderr
    text = subprocess.run(
        [sys.executable, "-m", "rgbdcast", "inspect", str(out)], capture_output=True, text=True
    ).stdout
    assert f"calibration cal0 {dev.calibration().revision}: registered depth and color" in text
    assert "tables: depth_to_camera_space" in text

    store = get_typestore(Stores.ROS2_HUMBLE)
    for name, msg in (cdr.CALIBRATION, cdr.FRAME_TRANSFORM, cdr.COMPRESSED_IMAGE, cdr.POINT_CLOUD):
        store.register(get_types_from_msg(msg.split("=" * 80)[0], name))
    field = cdr.POINT_CLOUD[1].split("=" * 80 + "\n")[-1].split("\n", 1)[1]
    store.register(get_types_from_msg(field, "foxglove_msgs/msg/PackedElementField"))
    seen: dict[str, Any] = {}
    with open(out, "rb") as f:
        reader = make_reader(f)
        for _, channel, message in reader.iter_messages():
            if channel.topic in ("/cal0/color/calibration", "/tf", "/cal0/calibration"):
                seen.setdefault(channel.topic, message.data)
            if channel.topic == "/cal0/points":
                seen.setdefault("points", []).append(message.data)
            if channel.topic == "/cal0/color":
                seen.setdefault("image", message.data)
        attachments = list(reader.iter_attachments())
    color = store.deserialize_cdr(seen["/cal0/color/calibration"], cdr.CALIBRATION[0])
    cal = dev.calibration()
    assert cal.color is not None and cal.depth_to_color is not None
    assert color.frame_id == "cal0_color_optical_frame"
    assert (color.width, color.height) == (cal.color.width, cal.color.height)
    assert color.k[0] == cal.color.fx and color.k[2] == cal.color.cx
    tf = store.deserialize_cdr(seen["/tf"], cdr.FRAME_TRANSFORM[0])
    assert (tf.parent_frame_id, tf.child_frame_id) == (cal.depth_frame, cal.color_frame)
    # the color camera's pose in the depth camera: where the mock put it
    from rgbdcast.devices.scene import MOCK_COLOR_CENTER

    t = (tf.translation.x, tf.translation.y, tf.translation.z)
    np.testing.assert_allclose(t, MOCK_COLOR_CENTER, atol=1e-9)
    q = np.array([tf.rotation.x, tf.rotation.y, tf.rotation.z, tf.rotation.w])
    assert abs(np.linalg.norm(q) - 1) < 1e-9 and 0.99999 < q[3] < 1.0
    image = store.deserialize_cdr(seen["image"], "foxglove_msgs/msg/CompressedImage")
    assert image.frame_id == "cal0_color_optical_frame"  # what the transform and camera name
    assert Calibration.from_dict(json.loads(seen["/cal0/calibration"])) == cal
    # --points: one Foxglove PointCloud per frameset, in the depth camera's frame
    assert len(seen["points"]) >= 10
    pc = store.deserialize_cdr(seen["points"][-1], cdr.POINT_CLOUD[0])
    assert pc.frame_id == "cal0_depth_optical_frame" and pc.point_stride == 16
    assert [f.name for f in pc.fields] == ["x", "y", "z", "red", "green", "blue", "alpha"]
    raw = np.frombuffer(pc.data.tobytes(), np.uint8).reshape(-1, 16)
    xyz = raw[:, :12].copy().view(np.float32)
    assert len(xyz) > 100_000 and xyz[:, 2].min() > 1.0 and xyz[:, 2].max() < 5.0
    (table,) = [a for a in attachments if a.name.endswith("/depth_to_camera_space")]
    assert np.array_equal(np.frombuffer(table.data, "<f4").reshape(424, 512, 2), dev.table)

    replay = ReplayDevice(out, "cal0")
    assert replay.calibration() == cal
    with Server("127.0.0.1", announce=False, name="replay") as rs:
        rs.add_device(replay)
        with Client(f"tcp://127.0.0.1:{rs.port}", connect_immediately=True) as client:
            assert client.calibration("cal0") == cal
            got = client.calibration_table("cal0")
            assert got is not None and np.array_equal(got, dev.table)
            with client.subscribe_frameset("cal0") as sets:
                frames = sets.get(timeout=5)
                assert frames[StreamKind.depth].calibration == cal.revision
                assert len(client.point_cloud(frames)) > 100_000
