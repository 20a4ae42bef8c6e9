"""Extrinsic calibration (issue 19): the pose arithmetic, the board in one camera, and real
calibration runs against multi-view mocks whose true poses are known."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from rgbdcast import Server, UsageError
from rgbdcast.devices.mock import MockDevice
from rgbdcast.frames import StreamKind
from rgbdcast.geometry.poses import (
    chain_poses,
    fit_plane,
    invert,
    mean_pose,
    pose_difference,
    rigid_fit,
)

cv2 = pytest.importorskip("cv2", reason="the [webcam] extra (OpenCV) is needed")

POSES = {
    "a": (0.0, 0.0, 0.0, 0.0, 0.0, 0.0),
    "b": (0.6, 0.0, 0.2, 0.0, -15.0, 0.0),
    "c": (-0.5, -0.1, 0.0, 5.0, 12.0, 1.0),
}

REFINE = ("--framesets", "10", "--refine")
SHORT = ("--timeout", "3")


def _pose(rx: float, ry: float, rz: float, t: tuple[float, float, float]) -> np.ndarray:
    m = np.eye(4)
    m[:3, :3] = cv2.Rodrigues(np.radians([rx, ry, rz]))[0]
    m[:3, 3] = t
    return m


def _matrix(dev: MockDevice) -> np.ndarray:
    r, t = dev.rig_from_depth
    m = np.eye(4)
    m[:3, :3], m[:3, 3] = r, t
    return m


# -- pose arithmetic (pure) ----------------------------------------------------------------------
def test_rigid_fit_and_plane_recover_what_made_the_points() -> None:
    rng = np.random.default_rng(0)
    truth = _pose(10, -20, 5, (0.3, -0.1, 2.0))
    src = rng.uniform(-1, 1, (50, 3))
    dst = (truth @ np.c_[src, np.ones(50)].T).T[:, :3]
    assert np.allclose(rigid_fit(src, dst), truth, atol=1e-9)
    planar = np.c_[src[:, :2], np.zeros(50)]  # a board's corners all have z = 0
    dst = (truth @ np.c_[planar, np.ones(50)].T).T[:, :3]
    assert np.allclose(rigid_fit(planar, dst), truth, atol=1e-9)
    with pytest.raises(UsageError, match="3 or more"):
        rigid_fit(src[:2], dst[:2])
    # a wall 3 m away with 5 mm noise and a person standing in front of part of it
    wall = np.c_[rng.uniform(-1, 1, (4000, 2)), 3.0 + rng.normal(0, 0.005, 4000)]
    person = np.c_[rng.uniform(-0.2, 0.2, (400, 2)), np.full(400, 2.2)]
    normal, offset, rms, kept = fit_plane(np.r_[wall, person])
    assert np.allclose(normal, [0, 0, -1], atol=1e-3) and offset == pytest.approx(-3.0, abs=1e-3)
    assert rms == pytest.approx(0.005, rel=0.1) and 3800 < kept <= 4000


def test_mean_pose_rejects_outliers_and_says_when_views_disagree() -> None:
    rng = np.random.default_rng(1)
    truth = _pose(0, 15, 0, (0.6, 0.0, 0.2))

    def noisy(scale: float) -> np.ndarray:
        d = _pose(*(rng.normal(0, 0.05 * scale, 3)), tuple(rng.normal(0, 0.002 * scale, 3)))
        return d @ truth

    views = [noisy(1) for _ in range(30)] + [noisy(40) for _ in range(4)]  # 4 wild ones
    est = mean_pose(views)
    assert est.consistent and est.inliers >= 30 and est.views == 34
    mm, deg = pose_difference(est.matrix, truth)
    assert mm < 1.5 and deg < 0.05
    assert est.spread_mm < 6 and est.worst_mm > 20
    bumped = _pose(0, 2, 0, (0.05, 0, 0)) @ truth  # the camera moved 5 cm and turned 2°
    est = mean_pose([noisy(1) for _ in range(15)] + [bumped @ noisy(1) for _ in range(15)])
    assert not est.consistent and est.worst_mm > 40


def test_chain_places_cameras_through_the_ones_that_saw_the_board_with_them() -> None:
    ab, bc = _pose(0, 10, 0, (0.5, 0, 0)), _pose(0, -20, 3, (0.2, 0.1, 0.3))
    edges = {("a", "b"): mean_pose([ab] * 6), ("c", "b"): mean_pose([invert(bc)] * 6)}
    placed = chain_poses(["a", "b", "c", "d"], edges, "a")
    assert set(placed) == {"a", "b", "c"}  # d never saw the board with anyone
    assert placed["c"][1] == "b" and placed["a"][1] is None
    assert np.allclose(placed["c"][0], ab @ bc)


def test_calibrator_errors_name_what_to_change() -> None:
    from rgbdcast.boardpose import Sighting
    from rgbdcast.calibrate import CalibrationError, Calibrator
    from rgbdcast.devices.board import DEFAULT_BOARD, BoardSpec

    spec = BoardSpec.parse(DEFAULT_BOARD)
    board_in = {"a": _pose(0, 0, 0, (0, 0, 3.5)), "b": _pose(0, 20, 0, (-1, 0, 3.3))}

    def sight(key: str, m: np.ndarray | None = None, corners: int = 24) -> Sighting:
        return Sighting(corners, 17, board_in[key] if m is None else m, 0.3, 2000, 5.0)

    cal = Calibrator(["a", "b", "c"], spec)
    for _ in range(10):
        cal.add({"a": sight("a"), "b": sight("b"), "c": Sighting(0, 0)})
    with pytest.raises(CalibrationError, match="no board in view of c in 10 framesets"):
        cal.solve(lambda key: None)
    with pytest.raises(CalibrationError, match=r"markers of DICT_4X4_50.*--board charuco:7x5"):
        cal.solve(lambda key: "DICT_4X4_50")
    cal.add({"c": Sighting(4, 3)})
    with pytest.raises(CalibrationError, match="c saw at most 4 corners"):
        cal.solve()
    cal.add({"c": sight("a")})  # seen, but never enough together with a placed camera
    with pytest.raises(CalibrationError, match="c never saw the board at the same time"):
        cal.solve()

    bumped = Calibrator(["a", "b"], spec)
    for i in range(20):
        moved = _pose(0, 3, 0, (0.08, 0, 0)) @ board_in["b"] if i >= 10 else None
        bumped.add({"a": sight("a"), "b": sight("b", moved)})
    with pytest.raises(CalibrationError, match=r"disagree.*bumped"):
        bumped.solve()

    ok = Calibrator(["a", "b"], spec)
    for _ in range(6):
        ok.add({"a": sight("a"), "b": sight("b")})
    assert ok.ready()
    rig = ok.solve()
    got = rig.devices["b"].rig_from_depth.matrix()
    assert np.allclose(got, board_in["a"] @ invert(board_in["b"]), atol=1e-9)
    assert rig.board == spec.to_dict() and rig.devices["a"].spread_mm is None


# -- the board in one camera --------------------------------------------------------------------
def test_one_view_of_the_board_places_it_within_millimetres() -> None:
    """Color corners alone put the board several centimetres off along the line of sight at
    3.5 m; with the depth plane every single view is within 3 mm and 0.2 degrees."""
    from rgbdcast.boardpose import BoardFinder
    from rgbdcast.devices.board import DEFAULT_BOARD, BoardSpec
    from rgbdcast.devices.sceneboard import BOARD_AT

    finder = BoardFinder(BoardSpec.parse(DEFAULT_BOARD))
    x0, ytop, bz = BOARD_AT
    world_from_board = _pose(0, 0, 0, (x0, -ytop, bz))
    for key, pose in POSES.items():
        dev = MockDevice(f"one-{key}", pose=pose, board=True)
        truth = invert(_matrix(dev)) @ world_from_board
        frames = {f.kind: f for f in dev.render(3)}
        seen = finder.find(frames, dev.calibration())
        assert seen.depth_from_board is not None and seen.corners >= 15, key
        mm, deg = pose_difference(seen.depth_from_board, truth)
        assert mm < 3.0 and deg < 0.2, (key, mm, deg)
        assert seen.reprojection_px < 1.0 and seen.plane_points > 1000
        no_depth = finder.find({StreamKind.color: frames[StreamKind.color]}, dev.calibration())
        assert no_depth.plane_points == 0 and no_depth.depth_from_board is not None
    plain = MockDevice("no-board", pose=POSES["a"])
    nothing = finder.find({f.kind: f for f in plain.render(3)}, plain.calibration())
    assert nothing.corners == 0 and nothing.depth_from_board is None


# -- real calibration runs ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def rig_server() -> Iterator[tuple[str, dict[str, MockDevice]]]:
    srv = Server("127.0.0.1", announce=False)
    devs = {
        # rendered live (prerendered framesets would repeat their depth noise) at 10 fps
        k: MockDevice(f"cam-{k}", pose=p, board=True, fps=10, streams=["depth", "color"])
        for k, p in POSES.items()
    }
    for dev in devs.values():
        srv.add_device(dev)
    srv.start()
    try:
        yield f"tcp://127.0.0.1:{srv.port}", devs
    finally:
        srv.stop()


def _errors(doc: dict, endpoint: str, devs: dict[str, MockDevice]) -> dict[str, tuple]:
    a = _matrix(devs["a"])
    out = {}
    for key, dev in devs.items():
        got = np.asarray(doc["devices"][f"{endpoint} {dev.id}"]["rig_from_depth"])
        out[key] = pose_difference(got, invert(a) @ _matrix(dev))
    return out


def test_calibrate_places_three_mock_cameras_from_the_board(rig_server: tuple) -> None:
    from rgbdcast.calibrate import calibrate

    endpoint, devs = rig_server
    seen = []
    rig, refined = calibrate(
        [(endpoint, d.id) for d in devs.values()],
        framesets=30,
        timeout_s=60,
        on_progress=lambda cal: seen.append(cal.useful),
    )
    assert refined == [] and seen and seen[-1] >= 30
    for key, (mm, deg) in _errors(rig.to_dict(), endpoint, devs).items():
        assert mm <= 5.0 and deg <= 0.5, (key, mm, deg)
    b = rig.devices[f"{endpoint} cam-b"]
    assert b.reprojection_px is not None and b.reprojection_px < 1.0
    assert b.spread_mm is not None and b.spread_mm < 15


def test_calibrate_cli_refines_with_icp_and_writes_the_rig_file(
    rig_server: tuple, tmp_path: Path
) -> None:
    pytest.importorskip("open3d", reason="the [icp] extra (Open3D) is needed for --refine")
    from rgbdcast.rig import load_rig_file

    endpoint, devs = rig_server
    out = tmp_path / "rig.json"
    res = subprocess.run(
        [sys.executable, "-m", "rgbdcast", "calibrate", endpoint, "--out", str(out), *REFINE],
        capture_output=True,
        text=True,
        timeout=110,
    )
    assert res.returncode == 0, res.stderr
    assert "cam-b: 0.6" in res.stdout and "refine" in res.stdout and f"wrote {out}" in res.stdout
    doc = json.loads(out.read_text())
    for key, (mm, deg) in _errors(doc, endpoint, devs).items():
        assert mm <= 3.0 and deg <= 0.3, (key, mm, deg)
    refine = doc["calibration"]["refine"]
    assert all(r["applied"] for r in refine.values())
    assert load_rig_file(out).to_dict() == doc  # what calibrate writes, a rig reads


def test_calibrate_says_what_is_wrong_in_one_line(rig_server: tuple, tmp_path: Path) -> None:
    endpoint, _ = rig_server

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "rgbdcast", "calibrate", *args],
            capture_output=True,
            text=True,
            timeout=60,
        )

    wrong = run(endpoint, "--board", "charuco:7x5:0.1:0.075:DICT_4X4_50", "--timeout", "3")
    assert wrong.returncode == 2 and "Traceback" not in wrong.stderr
    # the mock board is DICT_5X5_100, whose markers are the first of DICT_5X5_250 too
    assert "markers of DICT_5X5_" in wrong.stderr and "--board charuco:7x5" in wrong.stderr
    none = run(endpoint, "--device", "nope")
    assert none.returncode == 2 and "no device named nope" in none.stderr
    assert "name the rig's servers" in run().stderr
    png = tmp_path / "board.png"
    printed = run("--print-board", str(png))
    assert printed.returncode == 0 and "100 mm" in printed.stdout
    from rgbdcast.devices.board import DEFAULT_BOARD, BoardSpec

    img = cv2.imread(str(png), cv2.IMREAD_GRAYSCALE)
    _, ids, _, _ = cv2.aruco.CharucoDetector(BoardSpec.parse(DEFAULT_BOARD).board()).detectBoard(
        img
    )
    assert ids is not None and len(ids) == 24  # every inner corner of the 7x5 board


def test_calibrate_without_a_board_in_view() -> None:
    srv = Server("127.0.0.1", announce=False)
    srv.add_device(MockDevice("bare", prerender=4, streams=["depth", "color"]))
    srv.start()
    try:
        res = subprocess.run(
            [sys.executable, "-m", "rgbdcast", "calibrate", f"tcp://127.0.0.1:{srv.port}", *SHORT],
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        srv.stop()
    assert res.returncode == 2 and "no board in view of" in res.stderr
    assert "--print-board" in res.stderr and "Traceback" not in res.stderr


def test_a_camera_bumped_during_calibration_is_caught() -> None:
    """A camera moved 5 cm and turned 2 degrees halfway through: the views of its pose form two
    clusters, and calibration says the cameras disagree instead of averaging them."""
    from rgbdcast.calibrate import CalibrationError, calibrate

    srv = Server("127.0.0.1", announce=False)
    devs = [
        MockDevice(f"bump-{k}", pose=POSES[k], board=True, fps=10, streams=["depth", "color"])
        for k in ("a", "b")
    ]
    for dev in devs:
        srv.add_device(dev)
    srv.start()
    moved = []

    def bump(cal: object) -> None:
        if getattr(cal, "useful", 0) >= 12 and not moved:  # 12 views of the pair first
            moved.append(True)
            devs[1].move((0.65, 0.0, 0.2, 0.0, -13.0, 0.0))

    try:
        with pytest.raises(CalibrationError, match=r"disagree.*bumped"):
            calibrate(
                [(f"tcp://127.0.0.1:{srv.port}", d.id) for d in devs],
                framesets=30,
                timeout_s=60,
                on_progress=bump,
            )
    finally:
        srv.stop()
    assert moved
