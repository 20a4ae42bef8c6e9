"""Multi-view mocks (issue 19): several mock cameras at known poses see one scene, so their
clouds, placed by those poses, must fall on the same surfaces."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from rgbdcast.devices.mock import MockDevice
from rgbdcast.frames import JointType, StreamKind
from rgbdcast.geometry import deproject, project

POSES = {
    "a": (0.0, 0.0, 0.0, 0.0, 0.0, 0.0),
    "b": (0.6, 0.0, 0.2, 0.0, -15.0, 0.0),  # to the right, turned left towards the middle
    "c": (-0.5, -0.1, 0.0, 5.0, 12.0, 1.0),
}


def _frame(dev: MockDevice, kind: StreamKind, index: int = 10) -> object:
    return next(f for f in dev.render(index) if f.kind is kind)


def _serve_posed(
    prefix: str, keys: tuple[str, ...], **options: Any
) -> tuple[list[Any], list[MockDevice]]:
    """A started server per key, each serving one mock at that key's pose."""
    from rgbdcast import Server

    servers, devices = [], []
    for key in keys:
        srv = Server("127.0.0.1", announce=False)
        dev = MockDevice(f"{prefix}-{key}", pose=POSES[key], **options)
        srv.add_device(dev)
        srv.start()
        servers.append(srv)
        devices.append(dev)
    return servers, devices


def _world(dev: MockDevice, points: np.ndarray) -> np.ndarray:
    r, t = dev.rig_from_depth
    return np.asarray(points @ r.T + t)


def test_mock_cameras_at_known_poses_see_one_scene() -> None:
    devs = {k: MockDevice(f"rig-{k}", pose=p) for k, p in POSES.items()}
    a = devs["a"]
    cal_a = a.calibration()
    assert cal_a.depth is not None
    depth_a = _frame(a, StreamKind.depth).array / 1000.0  # type: ignore[attr-defined]
    ra, ta = a.rig_from_depth
    for key in ("b", "c"):
        dev = devs[key]
        cal = dev.calibration()
        assert cal.depth is not None
        depth = _frame(dev, StreamKind.depth).array  # type: ignore[attr-defined]
        pts = deproject(depth, cal.depth, 0.001)[depth > 0]
        # into camera a's depth camera, and where it lands in a's depth image
        in_a = (_world(dev, pts) - ta) @ ra
        u, v = project(in_a.astype(np.float32), cal_a.depth)
        ok = (u >= 0) & (u <= 511) & (v >= 0) & (v <= 423) & np.isfinite(u)
        ui, vi = np.rint(u[ok]).astype(int), np.rint(v[ok]).astype(int)
        seen = depth_a[vi, ui]
        diff = np.abs(in_a[ok, 2] - seen)
        shared = (seen > 0) & (diff < 0.05)  # surfaces both cameras see
        assert shared.sum() > 20_000, (key, shared.sum())
        # the static room from two viewpoints, placed by the poses: within a centimetre
        # (measured along a's rays at a's nearest pixel: more than the distance between the
        # surfaces where they slant, like the floor)
        assert diff[shared].mean() <= 0.01, (key, diff[shared].mean())
        # the skeleton each camera reports is one person in the world
        head = np.array(_frame(dev, StreamKind.body).bodies[0].joint(JointType.Head).position)  # type: ignore[attr-defined]
        head_a = np.array(_frame(a, StreamKind.body).bodies[0].joint(JointType.Head).position)  # type: ignore[attr-defined]
        flip = np.array([1.0, -1.0, 1.0])  # body positions are Kinect camera space (y up)
        np.testing.assert_allclose(_world(dev, head * flip), _world(a, head_a * flip), atol=1e-6)


def test_serve_takes_mock_poses_and_refuses_bad_ones() -> None:
    from rgbdcast import Client, Server

    srv = Server("127.0.0.1", announce=False)
    srv.add_device(MockDevice("p0", pose=POSES["b"], streams=["depth"]))
    with srv, Client(f"tcp://127.0.0.1:{srv.port}", connect_immediately=True) as client:
        assert client.devices["p0"].info["pose"] == list(POSES["b"])
    base = [sys.executable, "-m", "rgbdcast", "serve", "--no-announce", "--no-web"]
    for extra, needle in (
        (["--mock", "--mock-pose", "1,2,3"], "six numbers"),
        (["--mock", "--mock-pose", "0,0,0,0,0,0", "--mock-pose", "1,0,0,0,0,0"], "one per --mock"),
    ):
        res = subprocess.run([*base, *extra], capture_output=True, text=True, timeout=60)
        assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
        assert needle in res.stderr
    with pytest.raises(Exception, match="X,Y,Z"):
        MockDevice("bad", pose=(0.0, 0.0, float("nan"), 0.0, 0.0, 0.0))
    assert json.dumps(list(POSES["c"]))  # poses are plain numbers on the wire


def test_a_rig_matches_framesets_across_servers_whose_clocks_disagree() -> None:
    """Three servers with clocks -50, 0 and +37 ms off: read in our clock, their cameras'
    framesets match within half a frame period; a device that leaves is listed as missing and
    the rig goes on; when it returns, it is back in."""
    import time

    from rgbdcast import Server
    from rgbdcast.rig import Rig

    servers = []
    for i, off_ms in enumerate((-50.0, 0.0, 37.0)):
        skew = int(off_ms * 1e6)
        srv = Server("127.0.0.1", announce=False, clock=lambda s=skew: time.time_ns() + s)
        srv.add_device(MockDevice(f"cam{i}", color_size=(160, 90), prerender=30, pose=None))
        srv.start()
        servers.append(srv)
    try:
        members = [(f"tcp://127.0.0.1:{s.port}", f"cam{i}") for i, s in enumerate(servers)]
        with Rig(members) as rig:
            assert rig.tolerance_ns == pytest.approx(1e9 / 30 / 2, rel=0.01)
            sets = [rig.get(timeout=10) for _ in range(30)]
            assert all(len(rs.frames) == 3 and not rs.missing for rs in sets)
            for rs in sets:  # each frame within the tolerance of the set's middle
                assert all(abs(t - rs.time_ns) <= rig.tolerance_ns for t in rs.times_ns.values())
                assert rs.skew_ns <= 2 * rig.tolerance_ns
            # in the servers' own clocks the same framesets are ~87 ms apart: only the
            # offsets make them match
            raw = [
                max(f[StreamKind.depth].host_time_ns for f in rs.frames.values())
                - min(f[StreamKind.depth].host_time_ns for f in rs.frames.values())
                for rs in sets
            ]
            assert min(raw) > 60e6
            for rs in sets:  # each device's frames are one frameset
                for frames in rs.frames.values():
                    assert len({f.frameset_id for f in frames.values()}) == 1
            gone = servers[1].devices[0]
            servers[1].remove_device(gone.id)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                rs = rig.get(timeout=10)
                if rs.missing:
                    break
            assert [m.device for m in rs.missing] == ["cam1"] and len(rs.frames) == 2
            servers[1].add_device(MockDevice("cam1", color_size=(160, 90), prerender=30))
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                rs = rig.get(timeout=10)
                if not rs.missing:
                    break
            assert len(rs.frames) == 3 and not rs.missing
            stats = rig.stats()
            assert all(s["clock"].startswith("clock offset: ") for s in stats.values())
    finally:
        for srv in servers:
            srv.stop()


def _mean_nn(a: np.ndarray, b: np.ndarray, near: float = 0.05) -> tuple[float, int]:
    """Mean distance from the points of *a* to their nearest neighbour in *b* (OpenCV's FLANN
    k-d tree), over the points that have one within *near*: the surfaces both cameras see."""
    import cv2

    index = cv2.flann_Index(np.ascontiguousarray(b, np.float32), {"algorithm": 1, "trees": 4})
    _, dist2 = index.knnSearch(np.ascontiguousarray(a, np.float32), 1, params={"checks": 64})
    d = np.sqrt(dist2[:, 0])
    shared = d < near
    return float(d[shared].mean()), int(shared.sum())


def test_a_rig_file_fuses_the_cameras_into_one_cloud(tmp_path: Path) -> None:
    """Cameras placed by a rig file (here: the mocks' true poses) give one cloud in which each
    camera's view of the static scene lies within a centimetre of the others' (the person and
    the ball move between unsynchronised cameras' captures, so they are left out)."""
    from rgbdcast.geometry import Extrinsics
    from rgbdcast.geometry.rigfile import RigCamera, RigFile
    from rgbdcast.rig import Rig, RigFrameset, load_rig_file, save_rig_file

    servers, devices = _serve_posed("cam", ("a", "b", "c"), prerender=15, color_size=(640, 360))
    try:
        members = [
            (f"tcp://127.0.0.1:{s.port}", d.id) for s, d in zip(servers, devices, strict=True)
        ]
        rig_file = RigFile(
            {
                f"{ep} {dev.id}": RigCamera(Extrinsics.from_matrix(*dev.rig_from_depth))
                for (ep, _), dev in zip(members, devices, strict=True)
            },
            created="test",
        )
        path = tmp_path / "rig.json"
        save_rig_file(rig_file, path)
        assert load_rig_file(path) == rig_file  # the rig file round-trips
        with Rig(members, rig_file=path) as rig:
            rs = rig.get(timeout=10)
            fused = rig.point_cloud(rs)
            each = {
                m.device: rig.point_cloud(RigFrameset({m: frames}, {m: rs.times_ns[m]})).points
                for m, frames in rs.frames.items()
            }
        assert fused.frame_id == "rig" and len(fused) == sum(len(p) for p in each.values())

        def static(p: np.ndarray) -> np.ndarray:  # the wall and the floor: nothing moves there
            return p[(p[:, 2] > 3.5) | (p[:, 1] > 0.95)]

        for other in ("cam-b", "cam-c"):
            mean, shared = _mean_nn(static(each[other]), static(each["cam-a"]))
            assert shared > 5_000, (other, shared)
            assert mean <= 0.01, (other, mean)
        boxed = rig.point_cloud(rs, box=((-1.0, -2.0, 0.5), (1.0, 2.0, 3.0)))
        assert 0 < len(boxed) < len(fused)
    finally:
        for srv in servers:
            srv.stop()


def test_bad_rig_files_are_one_line(tmp_path: Path) -> None:
    from rgbdcast import UsageError
    from rgbdcast.rig import load_rig_file

    for text, needle in (
        ("{", "not JSON"),
        ('{"version": 2, "devices": {}}', "version"),
        ('{"version": 1, "devices": {"nospace": {}}}', "control endpoint"),
        ('{"version": 1, "devices": {"tcp://h:1 d": {"rig_from_depth": [[1,0,0,0]]}}}', "4x4"),
        (
            '{"version": 1, "devices": {"tcp://h:1 d": {"rig_from_depth": '
            "[[2,0,0,0],[0,1,0,0],[0,0,1,0],[0,0,0,1]]}}}",
            "orthonormal",
        ),
    ):
        p = tmp_path / "bad.json"
        p.write_text(text)
        with pytest.raises(UsageError, match=needle):
            load_rig_file(p)


def test_the_async_rig_matches_and_fuses_the_same() -> None:
    import asyncio

    from rgbdcast.aiorig import AsyncRig
    from rgbdcast.geometry import Extrinsics
    from rgbdcast.geometry.rigfile import RigCamera, RigFile

    servers, devices = _serve_posed("as", ("a", "b"), prerender=10, color_size=(320, 180))
    members = [(f"tcp://127.0.0.1:{s.port}", d.id) for s, d in zip(servers, devices, strict=True)]
    rig_file = RigFile(
        {
            f"{ep} {dev.id}": RigCamera(Extrinsics.from_matrix(*dev.rig_from_depth))
            for (ep, _), dev in zip(members, devices, strict=True)
        }
    )

    async def main() -> tuple[int, int, int]:
        async with AsyncRig(members, rig_file=rig_file) as rig:
            rs = await rig.get(timeout=10)
            seen = 0
            async for more in rig:  # and as an async iterator
                seen = len(more.frames)
                break
            cloud = await rig.point_cloud(rs, decimate=2)
            return len(rs.frames), seen, len(cloud)

    try:
        n, m, points = asyncio.run(main())
    finally:
        for srv in servers:
            srv.stop()
    assert n == m == 2 and points > 50_000


def test_the_mocks_show_the_default_charuco_board_where_it_stands() -> None:
    """OpenCV's ChArUco detector finds the mock's board in each camera's color image, and each
    corner where the board's true pose puts it (within a pixel): what calibration will use."""
    cv2 = pytest.importorskip("cv2", reason="the [webcam] extra (OpenCV) is needed")
    from rgbdcast.devices.board import DEFAULT_BOARD, BoardSpec
    from rgbdcast.devices.sceneboard import BOARD_AT

    spec = BoardSpec.parse(DEFAULT_BOARD)
    board = spec.board()
    detector = cv2.aruco.CharucoDetector(board)
    for key, pose in POSES.items():
        dev = MockDevice(f"board-{key}", pose=pose, board=True)
        cal = dev.calibration()
        assert cal.color is not None and cal.depth_to_color is not None
        color = _frame(dev, StreamKind.color).array  # type: ignore[attr-defined]
        corners, ids, _, _ = detector.detectBoard(cv2.cvtColor(color, cv2.COLOR_BGR2GRAY))
        assert ids is not None and len(ids) >= 15, (key, None if ids is None else len(ids))
        obj, seen = board.matchImagePoints(corners, ids)
        # the board's corners in the world (its top-left at BOARD_AT, axes along the world's)
        x0, ytop, bz = BOARD_AT
        world = obj.reshape(-1, 3) + np.array([x0, -ytop, bz])
        r, t = dev.rig_from_depth
        in_color = cal.depth_to_color.apply((world - t) @ r)
        u, v = project(in_color, cal.color)
        err = np.hypot(seen.reshape(-1, 2)[:, 0] - u, seen.reshape(-1, 2)[:, 1] - v)
        assert err.max() < 1.0, (key, err.max())


def test_the_board_shows_in_the_mocks_infrared_too() -> None:
    """The printed board changes the depth camera's infrared where it stands: its white paper
    bright, its print dark (a Kinect sees a board in IR; at 3.5 m the 512x424 camera resolves
    its squares, not its markers)."""
    plain = MockDevice("ir-plain", pose=POSES["b"])
    board = MockDevice("ir-board", pose=POSES["b"], board=True)
    a = _frame(board, StreamKind.infrared, 3).array.astype(np.float64)  # type: ignore[attr-defined]
    b = _frame(plain, StreamKind.infrared, 3).array.astype(np.float64)  # type: ignore[attr-defined]
    changed = a != b
    assert 2000 < changed.sum() < 6000  # the board: 0.7 x 0.5 m at 3.5 m
    dark, light = np.percentile(a[changed], [10, 90])
    assert dark < 0.3 * light  # the print against the paper


def test_board_specs_are_checked() -> None:
    pytest.importorskip("cv2", reason="the [webcam] extra (OpenCV) is needed")
    from rgbdcast import UsageError
    from rgbdcast.devices.board import DEFAULT_BOARD, BoardSpec

    spec = BoardSpec.parse(DEFAULT_BOARD)
    assert str(spec) == DEFAULT_BOARD and spec.size_m == pytest.approx((0.7, 0.5))
    assert spec.to_dict()["dictionary"] == "DICT_5X5_100"
    for bad, needle in (
        ("chess:7x5", "charuco:COLSxROWS"),
        ("charuco:2x5:0.1:0.07:DICT_5X5_100", "3..40"),
        ("charuco:7x5:0.1:0.2:DICT_5X5_100", "smaller"),
        ("charuco:7x5:0.1:0.07:DICT_NOPE", "unknown ArUco"),
    ):
        with pytest.raises(UsageError, match=needle):
            BoardSpec.parse(bad)


def test_record_rig_writes_every_camera_and_the_rig_frame(tmp_path: Path) -> None:
    """``record --rig`` records the cameras of two servers into one file, with the rig file on
    /rig and, on /tf, each camera's depth frame placed in the rig frame (what Foxglove needs
    to show the rig); a device the server does not have is one line."""
    from mcap.reader import make_reader
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    from rgbdcast.geometry import Extrinsics
    from rgbdcast.geometry.rigfile import RigCamera, RigFile
    from rgbdcast.protocol import cdr
    from rgbdcast.record.reader import Recording
    from rgbdcast.rig import save_rig_file

    servers, devices = _serve_posed("rec", ("a", "b"), prerender=5, color_size=(320, 180))
    try:
        eps = [f"tcp://127.0.0.1:{s.port}" for s in servers]
        rig = RigFile(
            {
                f"{ep} {d.id}": RigCamera(Extrinsics.from_matrix(*d.rig_from_depth))
                for ep, d in zip(eps, devices, strict=True)
            }
        )
        path = tmp_path / "rig.json"
        save_rig_file(rig, path)
        out = tmp_path / "rig.mcap"
        cmd = [sys.executable, "-m", "rgbdcast", "record", "--rig", str(path), "-o", str(out)]
        res = subprocess.run(
            [*cmd, "--duration", "1.5", "--streams", "depth,color"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert res.returncode == 0, res.stderr
        assert "recording 4 streams" in res.stdout
        summary = Recording(out).scan().summary()
        got = {(s["device"], s["stream"]) for s in summary["streams"] if s["frames"] > 10}
        assert got == {(d.id, k) for d in devices for k in ("depth", "color")}
        store = get_typestore(Stores.ROS2_HUMBLE)
        store.register(get_types_from_msg(cdr.FRAME_TRANSFORM[1], cdr.FRAME_TRANSFORM[0]))
        placed, rig_doc = {}, None
        with open(out, "rb") as f:
            for _, channel, message in make_reader(f).iter_messages(topics=["/tf", "/rig"]):
                if channel.topic == "/rig":
                    rig_doc = json.loads(message.data)
                    continue
                tf = store.deserialize_cdr(message.data, cdr.FRAME_TRANSFORM[0])
                if tf.parent_frame_id == "rig":
                    placed[tf.child_frame_id] = (tf.translation, tf.rotation)
        assert rig_doc == rig.to_dict()
        for dev in devices:
            t, q = placed[f"{dev.id}_depth_optical_frame"]
            want = Extrinsics.from_matrix(*dev.rig_from_depth)
            np.testing.assert_allclose([t.x, t.y, t.z], want.translation, atol=1e-9)
            np.testing.assert_allclose([q.x, q.y, q.z, q.w], want.quaternion(), atol=1e-9)
        # a rig file naming a device its server does not have: one line
        twice = RigFile(
            {f"{ep} same": RigCamera(Extrinsics.from_matrix(np.eye(3), [0, 0, 0])) for ep in eps}
        )
        save_rig_file(twice, path)
        bad = subprocess.run([*cmd, "--duration", "1"], capture_output=True, text=True, timeout=60)
        assert bad.returncode == 2 and "has no device same" in bad.stderr
    finally:
        for srv in servers:
            srv.stop()
