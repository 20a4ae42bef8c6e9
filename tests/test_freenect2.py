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

from rgbdcast import DeviceError, StreamKind
from rgbdcast.devices.freenect2 import Freenect2Device
from rgbdcast.devices.scene import KINECT_COLOR, KINECT_DEPTH, Scene
from rgbdcast.testing import check_device


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
        self.scene = Scene(KINECT_DEPTH, KINECT_COLOR)
        module = self

        class Listener:
            def __init__(self, types: int) -> None:
                self.types, self.held, self.t0, self.n = types, 0, time.monotonic(), 0

            def waitForNewFrame(self, milliseconds: int) -> dict[str, _Frame]:
                assert module.calls[-1] in ("start", "release"), "wait before start/release"
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
                return SimpleNamespace(
                    fx=365.5,
                    fy=365.5,
                    cx=256.0,
                    cy=212.0,
                    k1=0.09,
                    k2=-0.27,
                    k3=0.09,
                    p1=0.0,
                    p2=0.0,
                )

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
    assert fake.calls[:4] == ["open", "color-listener", "depth-listener", "start"]
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
