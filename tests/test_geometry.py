"""Geometry against ground truth: the mock renders its color camera from a known offset pose, so
a registered color can be checked against what that camera really sees at the same 3-D point."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from rgbdcast import UsageError
from rgbdcast.devices.mock import MockDevice
from rgbdcast.frames import Intrinsics
from rgbdcast.geometry import (
    Calibration,
    Extrinsics,
    color_to_depth,
    deproject,
    depth_to_color,
    point_cloud,
    project,
    ray_table,
    register,
)
from rgbdcast.geometry import pointcloud as pc_module
from rgbdcast.geometry.camera import distort, undistort


@pytest.fixture(scope="module")
def mock() -> MockDevice:
    return MockDevice("geo0")


def truth_uv(dev: MockDevice, t: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Where each depth pixel's true (noise-free) 3-D point lands in the color camera."""
    cal = dev.calibration()
    assert cal.depth is not None and cal.color is not None and cal.depth_to_color is not None
    z = dev.scene.depth_m(t)
    z[~np.isfinite(z)] = 0
    rays = ray_table(cal.depth)
    p = np.dstack([rays[..., 0] * z, rays[..., 1] * z, z]).astype(np.float32)
    u, v = project(cal.depth_to_color.apply(p), cal.color)
    return u, v, z


def depth_edges(z: np.ndarray, step: float = 0.1, grow: int = 3) -> np.ndarray:
    gx = np.abs(np.diff(z, axis=1, prepend=z[:, :1]))
    gy = np.abs(np.diff(z, axis=0, prepend=z[:1]))
    k = np.ones((2 * grow + 1, 2 * grow + 1), np.uint8)
    return cv2.dilate(((gx > step) | (gy > step)).astype(np.uint8), k).astype(bool)


@pytest.mark.parametrize("t", [0.0, 1.3, 4.2])
def test_registered_color_lands_where_the_color_camera_saw_the_point(
    mock: MockDevice, t: float
) -> None:
    cal = mock.calibration()
    depth = mock.scene.depth(t, 0)
    _, color_z = mock.scene.color_and_z(t)
    reg = register(depth, cal)
    ut, vt, z = truth_uv(mock, t)
    vis = reg.visible
    err = np.hypot(reg.u - ut, reg.v - vt)[vis]
    assert vis.sum() > 0.8 * depth.size
    assert err.mean() <= 0.5 and err.max() < 2.0, (err.mean(), err.max())
    # the surface the color camera saw at that pixel is the point's own surface
    ui = np.floor(reg.u[vis] + 0.5).astype(int)
    vi = np.floor(reg.v[vis] + 0.5).astype(int)
    seen = color_z[vi, ui]
    wrong = np.abs(seen - reg.zc[vis]) > np.maximum(0.05, 0.02 * reg.zc[vis])
    near = depth_edges(z)[vis]
    assert near.sum() > 2000  # the scene has edges to test at
    assert wrong[near].mean() <= 0.005, f"{wrong[near].mean():.2%} wrong near depth edges"
    # without the occlusion test the same points would bleed: the test is what fixes it
    inside = reg.valid & (reg.u >= -0.5) & (reg.u < 1919.5) & (reg.v >= -0.5) & (reg.v < 1079.5)
    ui2 = np.floor(reg.u[inside] + 0.5).astype(int)
    vi2 = np.floor(reg.v[inside] + 0.5).astype(int)
    bleed = np.abs(color_z[vi2, ui2] - reg.zc[inside]) > np.maximum(0.05, 0.02 * reg.zc[inside])
    assert bleed[depth_edges(z)[inside]].mean() > 0.05


def test_colors_per_depth_pixel_match_the_color_cameras_rendering(mock: MockDevice) -> None:
    cal = mock.calibration()
    depth = mock.scene.depth(2.0, 1)
    color = mock.scene.color(2.0)
    reg = register(depth, cal)
    out = color_to_depth(reg, color, cal)
    ut, vt, _ = truth_uv(mock, 2.0)
    vis = reg.visible
    expect = color[np.floor(vt[vis] + 0.5).astype(int), np.floor(ut[vis] + 0.5).astype(int)]
    same = np.all(np.abs(out[vis].astype(int) - expect) <= 12, axis=-1)  # sensor grain +-6
    assert same.mean() > 0.99
    assert not out[~reg.valid].any()


def test_depth_in_the_color_camera_is_z_buffered_near_wins(mock: MockDevice) -> None:
    cal = mock.calibration()
    depth = mock.scene.depth(1.0, 0)
    _, color_z = mock.scene.color_and_z(1.0)
    reg = register(depth, cal)
    dc = depth_to_color(reg, cal)
    assert dc.shape == (1080, 1920) and dc.dtype == np.uint16
    has = dc > 0
    # the color camera sees wider than the depth camera (as on a Kinect v2): inside the depth
    # camera's view, the footprints leave no holes
    assert has[:, 260:1660].mean() > 0.97, has[:, 260:1660].mean()  # less what depth cannot see
    assert not has[:, :150].any() and not has[:, -150:].any()
    truth_mm = color_z * 1000
    ok = np.abs(dc[has] - truth_mm[has]) < np.maximum(30, 0.02 * truth_mm[has])
    assert ok.mean() > 0.97, ok.mean()
    # where the person stands in front of the wall the near surface wins
    person = (truth_mm < 3000) & (truth_mm > 1800)
    assert np.median(dc[person & has]) < 3000


def test_the_c_path_and_the_numpy_reference_give_the_same_cloud(mock: MockDevice) -> None:
    if not pc_module.native():
        pytest.skip("the C accelerator was not built (no compiler); the numpy path is the cloud")
    cal = mock.calibration()
    depth = mock.scene.depth(3.0, 2)
    color = mock.scene.color(3.0)
    for kw in (
        {},
        {"decimate": 2},
        {"keep_uncolored": True},
        {"z_range": (0.5, 3.0)},
        {"box": ((-1.0, -1.0, 0.5), (1.0, 1.0, 3.5))},
        {"organized": True},
    ):
        a = point_cloud(depth, color, cal, **kw)  # type: ignore[arg-type]
        b = point_cloud(depth, color, cal, reference=True, **kw)  # type: ignore[arg-type]
        assert len(a) == len(b), kw
        assert a.points.shape == b.points.shape and a.colors.shape == b.colors.shape
        np.testing.assert_allclose(a.points, b.points, rtol=1e-6, atol=1e-6)
        assert (a.colors != b.colors).any(axis=-1).mean() < 1e-3, kw


def test_a_cloud_is_metres_rgb_in_the_depth_frame_and_crops(mock: MockDevice) -> None:
    cal = mock.calibration()
    depth = mock.scene.depth(0.5, 0)
    color = mock.scene.color(0.5)
    cloud = point_cloud(depth, color, cal)
    assert cloud.points.dtype == np.float32 and cloud.points.shape[1] == 3
    assert cloud.colors.dtype == np.uint8 and cloud.colors.shape == cloud.points.shape
    assert cloud.frame_id == "geo0_depth_optical_frame"
    z = cloud.points[:, 2]
    assert z.min() > 1.0 and z.max() < 5.0
    # optical axes: the floor (1 m below the camera) has y = +1 (y down)
    floor = cloud.points[cloud.points[:, 1] > 0.9]
    assert len(floor) > 1000 and abs(np.median(floor[:, 1]) - 1.0) < 0.02
    # the ball is red: RGB, not BGR (the scene paints it BGR (40, 40, 220))
    red = (cloud.colors[:, 0] > 150) & (cloud.colors[:, 2] < 80)
    assert red.sum() > 100
    near = point_cloud(depth, color, cal, z_range=(0.5, 3.0))
    assert 0 < len(near) < len(cloud) and near.points[:, 2].max() <= 3.0
    boxed = point_cloud(depth, color, cal, box=((-0.5, -2.0, 0.0), (0.5, 2.0, 10.0)))
    assert np.all(np.abs(boxed.points[:, 0]) <= 0.5)
    org = point_cloud(depth, color, cal, organized=True)
    assert org.points.shape == (424, 512, 3) and org.mask is not None
    assert len(org) == len(cloud) and np.isnan(org.points[~org.mask]).all()
    dec = point_cloud(depth, color, cal, decimate=2, organized=True)
    assert dec.points.shape == (212, 256, 3)
    # BGRA, as a Kinect v2 delivers color, gives the same cloud
    bgra = np.dstack([color, np.full(color.shape[:2], 255, np.uint8)])
    same = point_cloud(depth, bgra, cal)
    np.testing.assert_array_equal(same.colors, cloud.colors)


def test_without_a_calibration_or_with_mismatched_frames_the_call_says_so(
    mock: MockDevice,
) -> None:
    depth = mock.scene.depth(0.0, 0)
    color = mock.scene.color(0.0)
    bare = Calibration(device_id="x", depth=mock.calibration().depth)
    with pytest.raises(UsageError, match="no depth-to-color calibration"):
        point_cloud(depth, color, bare)
    with pytest.raises(UsageError, match="does not match"):
        point_cloud(depth[:100], color, mock.calibration())
    with pytest.raises(UsageError, match="does not match"):
        point_cloud(depth, color[:, :100], mock.calibration())
    with pytest.raises(UsageError, match="decimate"):
        point_cloud(depth, color, mock.calibration(), decimate=0)
    with pytest.raises(UsageError, match="z_range"):
        point_cloud(depth, color, mock.calibration(), z_range=(3.0, 1.0))


def test_the_calibration_round_trips_and_refuses_what_no_camera_has(mock: MockDevice) -> None:
    cal = mock.calibration()
    wire = cal.to_dict()
    assert Calibration.from_dict(wire) == cal
    assert wire["version"] == 1 and wire["axes"] == "opencv"
    assert wire["cameras"]["color"]["frame_id"] == "geo0_color_optical_frame"
    assert Calibration.from_dict(wire).revision == cal.revision

    def bad(mutate: object, match: str) -> None:
        import copy

        d = copy.deepcopy(wire)
        mutate(d)  # type: ignore[operator]
        with pytest.raises(UsageError, match=match):
            Calibration.from_dict(d)

    bad(lambda d: d["cameras"]["color"]["intrinsics"].update(fx=float("nan")), "finite")
    bad(lambda d: d["cameras"]["color"]["intrinsics"].update(fx=0.0), "focal")
    bad(lambda d: d["cameras"]["depth"]["intrinsics"].update(fy=1e9), "implausible")
    bad(lambda d: d["cameras"]["depth"]["intrinsics"].update(cx=-400.0), "principal point")
    bad(
        lambda d: d["depth_to_color"].update(rotation=[[1, 0, 0], [0, 1, 0], [0, 0.5, 1]]),
        "orthonormal",
    )
    bad(
        lambda d: d["depth_to_color"].update(rotation=[[-1, 0, 0], [0, 1, 0], [0, 0, 1]]),
        "orthonormal",
    )
    bad(lambda d: d["depth_to_color"].update(translation=[52.0, 0.0, 0.0]), "metres")
    bad(lambda d: d["depth_to_color"].update(translation=[float("nan"), 0.0, 0.0]), "finite")
    bad(lambda d: d.update(version=2), "upgrade")
    bad(lambda d: d.update(depth_units=0.0), "depth_units")
    bad(lambda d: d.update(axes="ros"), "opencv")
    bad(
        lambda d: d["cameras"]["color"]["intrinsics"].update(distortion=[0.1, 0.2, 0.3]),
        "coefficients",
    )
    bad(lambda d: d["cameras"]["color"].pop("intrinsics"), "needs intrinsics")
    with pytest.raises(UsageError, match="must be a JSON object"):
        Calibration.from_dict([1, 2])


def test_distortion_inverts_and_deprojection_follows_the_rays() -> None:
    intr = Intrinsics(
        width=640,
        height=480,
        fx=600.0,
        fy=600.0,
        cx=320.0,
        cy=240.0,
        distortion=(0.12, -0.25, 0.001, -0.002, 0.08),
    )
    rng = np.random.default_rng(1)
    x = rng.uniform(-0.5, 0.5, 1000)
    y = rng.uniform(-0.4, 0.4, 1000)
    xd, yd = distort(x, y, intr.distortion)
    xu, yu = undistort(xd, yd, intr.distortion)
    assert np.abs(xu - x).max() < 1e-6 and np.abs(yu - y).max() < 1e-6
    # a pixel deprojected at any depth projects back onto itself
    depth = np.full((480, 640), 1500, np.uint16)
    pts = deproject(depth, intr, 0.001)
    u, v = project(pts, intr)
    gu, gv = np.meshgrid(np.arange(640), np.arange(480))
    assert np.abs(u - gu).max() < 1e-2 and np.abs(v - gv).max() < 1e-2
    assert math.isclose(float(pts[240, 320, 2]), 1.5, rel_tol=1e-6)


def test_extrinsics_compose_and_invert() -> None:
    a = 0.3
    rot = np.array([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1]])
    e = Extrinsics.from_matrix(rot, (0.05, -0.01, 0.002))
    p = np.array([[0.1, 0.2, 2.0]], np.float32)
    back = e.inverse().apply(e.apply(p))
    np.testing.assert_allclose(back, p, atol=1e-6)
    np.testing.assert_allclose(e.matrix() @ e.inverse().matrix(), np.eye(4), atol=1e-12)


def test_the_geometry_bench_measures_what_it_reports() -> None:
    """The figures `rgbdcast bench --suite geometry` writes come from these functions."""
    from rgbdcast.bench.geometry import accuracy, kinect_fit, speed

    acc = accuracy(frames=2)
    assert acc["mean_px"] <= 0.5 and acc["edge_fail_pct"] <= 0.5
    assert acc["edge_fail_plain_pct"] > 5 * max(acc["edge_fail_pct"], 0.1)
    assert kinect_fit()["max_px"] <= 0.5
    times, _ = speed(reps=2, rounds=1)
    assert {"ours", "ours (numpy reference)", "numpy back-projection (no color)"} <= set(times)
    assert all(ms > 0 for ms in times.values())
