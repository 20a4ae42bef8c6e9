"""Kinect v2 through libfreenect2, against an SDK-shaped fake of pylibfreenect2.

No Kinect (and no libfreenect2) exists on this machine. The fake follows pylibfreenect2's
documented shapes and call order: Freenect2().enumerateDevices / getDeviceSerialNumber /
openDevice, a SyncMultiFrameListener set as color and IR+depth listener, start(),
waitForNewFrame() returning a frame map ("color" BGRX uint8 1080x1920x4, "depth" float32 mm and
"ir" float32 as asarray(np.float32)), release(frames), getIrCameraParams(), stop(), close().
Unverified on real hardware.
"""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from rgbdcast import Client, DeviceError, Server, StreamKind
from rgbdcast.devices.freenect2 import Freenect2Device
from rgbdcast.devices.freenect2reg import COLOR_Q, DEPTH_Q, POLY_TERMS, depth_to_color
from rgbdcast.devices.scene import KINECT_COLOR, KINECT_DEPTH, Scene
from rgbdcast.frames import Intrinsics
from rgbdcast.geometry import Extrinsics, project, ray_table
from rgbdcast.testing import check_device

IR_PARAMS = SimpleNamespace(
    fx=365.5, fy=365.5, cx=256.0, cy=212.0, k1=0.09, k2=-0.27, k3=0.09, p1=0.0, p2=0.0
)
# the fake sensor's true color camera, 5.2 cm to the side and turned a quarter degree
TRUE_COLOR = Intrinsics(width=1920, height=1080, fx=1081.37, fy=1081.37, cx=959.5, cy=539.5)
_A = np.radians(0.25)
TRUE_DEPTH_TO_COLOR = Extrinsics.from_matrix(
    [[np.cos(_A), 0, np.sin(_A)], [0, 1, 0], [-np.sin(_A), 0, np.cos(_A)]],
    (0.052, 0.0004, 0.0002),
)


def factory_color_params(shift_d: float = 863.0) -> SimpleNamespace:
    """Plausible ``ColorCameraParams``: libfreenect2's polynomials least-squares fitted to the
    true color camera above (shift_m is the baseline in millimetres, as on a real Kinect v2)."""
    ir, c, ext = IR_PARAMS, TRUE_COLOR, TRUE_DEPTH_TO_COLOR
    shift_m = ext.translation[0] * 1000
    ys, xs = np.mgrid[0:424:4, 0:512:4]
    d = np.stack([(xs - ir.cx) / ir.fx, (ys - ir.cy) / ir.fy, np.ones(xs.shape)], -1)
    rd = d.reshape(-1, 3) @ ext.R.T
    xn, yn = rd[:, 0] / rd[:, 2], rd[:, 1] / rd[:, 2]
    mx, my = (xs.ravel() - ir.cx) * DEPTH_Q, (ys.ravel() - ir.cy) * DEPTH_Q
    a = np.column_stack([mx ** int(t[1]) * my ** int(t[3]) for t in POLY_TERMS])
    wx = np.linalg.lstsq(a, (xn + shift_m / shift_d) * c.fx * COLOR_Q, rcond=None)[0]
    wy = np.linalg.lstsq(a, yn * c.fy * COLOR_Q, rcond=None)[0]
    params = {"fx": c.fx, "fy": c.fy, "cx": c.cx, "cy": c.cy}
    params.update(shift_d=shift_d, shift_m=shift_m)
    params.update({f"mx_{t}": float(v) for t, v in zip(POLY_TERMS, wx, strict=True)})
    params.update({f"my_{t}": float(v) for t, v in zip(POLY_TERMS, wy, strict=True)})
    return SimpleNamespace(**params)


class _Frame:
    def __init__(self, array: np.ndarray) -> None:
        self._a = array

    def asarray(self, dtype: Any = None) -> np.ndarray:
        return self._a if dtype is None else self._a.astype(dtype)


class FakeFreenect2Module:
    """SDK-shaped stand-in for the pylibfreenect2 module."""

    FrameType = SimpleNamespace(Color=1, Ir=2, Depth=4)

    def __init__(self, devices: int = 1) -> None:
        self.devices = devices
        self.calls: list[str] = []
        self.scene = Scene(
            KINECT_DEPTH, KINECT_COLOR, 0, (TRUE_DEPTH_TO_COLOR.R, TRUE_DEPTH_TO_COLOR.t)
        )
        module = self

        class Listener:
            def __init__(self, types: int) -> None:
                self.types, self.held, self.t0, self.n = types, 0, time.monotonic(), 0

            def waitForNewFrame(self, milliseconds: int) -> dict[str, _Frame]:
                assert module.calls[-1] in ("start", "release", "color-params"), "wait before start"
                time.sleep(1 / 30)
                t = self.n / 30
                self.n += 1
                depth = module.scene.depth(t).astype(np.float32)
                bgr = module.scene.color(t)
                self.held += 1
                module.calls.append("wait")
                return {
                    "color": _Frame(np.dstack([bgr, np.zeros(bgr.shape[:2], np.uint8)])),
                    "depth": _Frame(depth),
                    "ir": _Frame(module.scene.infrared(depth.astype(np.uint16)).astype(np.float32)),
                }

            def release(self, frames: dict[str, _Frame]) -> None:
                self.held -= 1
                module.calls.append("release")

        class Device:
            def setColorFrameListener(self, listener: Listener) -> None:
                module.calls.append("color-listener")

            def setIrAndDepthFrameListener(self, listener: Listener) -> None:
                module.calls.append("depth-listener")

            def start(self) -> bool:
                module.calls.append("start")
                return True

            def getIrCameraParams(self) -> Any:
                return IR_PARAMS

            def getColorCameraParams(self) -> Any:
                module.calls.append("color-params")
                return factory_color_params()

            def stop(self) -> None:
                module.calls.append("stop")

            def close(self) -> None:
                module.calls.append("close")

        class Freenect2:
            def enumerateDevices(self) -> int:
                return module.devices

            def getDeviceSerialNumber(self, index: int) -> bytes:
                return b"011234543412"

            def openDevice(self, serial: str) -> Device:
                module.calls.append("open")
                return Device()

        self.Freenect2 = Freenect2
        self.SyncMultiFrameListener = Listener


def test_freenect2_passes_the_conformance_suite() -> None:
    fake = FakeFreenect2Module()
    dev = Freenect2Device(module=lambda: fake)
    assert dev.id == "kinect2-011234543412"
    frames = check_device(dev, frames_per_stream=3)
    assert set(frames) == {StreamKind.color, StreamKind.depth, StreamKind.infrared}
    assert frames[StreamKind.color][0].array.shape == (1080, 1920, 4)
    depth = frames[StreamKind.depth][0]
    assert depth.array.dtype == np.uint16 and 500 < np.median(depth.array) < 6000
    assert depth.intrinsics is not None and depth.intrinsics.fx == 365.5
    assert fake.calls[:5] == ["open", "color-listener", "depth-listener", "start", "color-params"]
    assert fake.calls[-2:] == ["stop", "close"]
    waits, releases = fake.calls.count("wait"), fake.calls.count("release")
    assert waits == releases  # every frameset handed back to libfreenect2


def test_freenect2_says_it_has_no_body_tracking() -> None:
    fake = FakeFreenect2Module()
    dev = Freenect2Device(module=lambda: fake)
    assert dev.describe()["body_tracking"] is False
    assert StreamKind.body not in dev.streams
    with pytest.raises(DeviceError, match="no body tracking"):
        Freenect2Device(module=lambda: fake, streams=["depth", "body"])
    with pytest.raises(DeviceError, match="no Kinect v2 found"):
        Freenect2Device(module=lambda: FakeFreenect2Module(devices=0))


def test_a_missing_sdk_is_one_line_naming_the_fix() -> None:
    import platform
    import subprocess
    import sys

    if platform.system() == "Windows":
        pytest.skip("on Windows --kinect2 uses the Kinect SDK")
    res = subprocess.run(
        [sys.executable, "-m", "rgbdcast", "serve", "--no-announce", "--kinect2"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 2 and "Traceback" not in res.stderr
    (line,) = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert "pylibfreenect2" in line and "LIBFREENECT2_INSTALL_PREFIX" in line


def test_freenect2_publishes_the_factory_calibration_fitted_within_half_a_pixel() -> None:
    """libfreenect2's own registration model (polynomials and shift) becomes a pinhole color
    camera and transform any consumer can use: within 0.5 px of the model over the frame."""
    fake = FakeFreenect2Module()
    dev = Freenect2Device(module=lambda: fake)
    with Server(address="127.0.0.1", announce=False) as srv:
        srv.add_device(dev)
        with Client(next(iter(srv.endpoints.values()))) as client:
            cal = client.calibration(dev.id)
            with client.subscribe_frameset(dev.id) as sets:
                cloud = client.point_cloud(sets.get(timeout=10))
    assert cal == dev.calibration() and cal.source.startswith("libfreenect2")
    assert cal.depth is not None and cal.depth.distortion == (0.09, -0.27, 0.0, 0.0, 0.09)
    assert cal.color is not None and cal.depth_to_color is not None
    assert dev.fit is not None and dev.fit.check_max_px <= 0.5
    np.testing.assert_allclose(cal.depth_to_color.translation, (0.052, 0.0, 0.0), atol=1e-3)
    # against libfreenect2's model itself, at random undistorted pixels and depths
    rng = np.random.default_rng(5)
    x, y = rng.uniform(0, 511, 5000), rng.uniform(0, 423, 5000)
    z = rng.uniform(0.5, 4.5, 5000)
    u0, v0 = depth_to_color(IR_PARAMS, factory_color_params(), x, y, z * 1000)
    pin = Intrinsics(width=512, height=424, fx=365.5, fy=365.5, cx=256.0, cy=212.0)
    pts = np.column_stack([(x - pin.cx) / pin.fx * z, (y - pin.cy) / pin.fy * z, z])
    u1, v1 = project(cal.depth_to_color.apply(pts), cal.color)
    inside = (u0 >= 0) & (u0 < 1920) & (v0 >= 0) & (v0 < 1080)
    assert np.hypot(u1 - u0, v1 - v0)[inside].max() <= 0.5
    assert len(cloud) > 100_000
    assert ray_table(cal.depth).shape == (424, 512, 2)
