"""The RealSense adapter through the real SDK: synthetic frames are recorded with a software
device and the SDK's recorder, then played back by the adapter as the device (no hardware)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest

if os.environ.get("CI"):  # CI installs the [realsense] extra: a failed import is a failure there
    import pyrealsense2 as rs
else:
    rs = pytest.importorskip("pyrealsense2", reason="the [realsense] extra is needed")

from rgbdcast import Client, Server, StreamKind
from rgbdcast.devices.realsense import RealSenseDevice
from rgbdcast.testing import check_device

W, H, FPS = 64, 48, 30
_A = np.radians(2.0)
# depth to color, deliberately not symmetric so that a transposed reading would show
EXT_ROTATION = np.array(
    [[np.cos(_A), -np.sin(_A), 0.0], [np.sin(_A), np.cos(_A), 0.0], [0.0, 0.0, 1.0]]
)
EXT_TRANSLATION = (0.015, 0.0002, -0.0004)


def _record(path: Path, depth_units: float, frames: int = 12) -> list[np.ndarray]:
    """Record depth (z16), color (bgr8) and infrared (y8) from a software device."""
    sd = rs.software_device()
    sd.register_info(rs.camera_info.serial_number, "8123456")
    intr = rs.intrinsics()
    intr.width, intr.height, intr.fx, intr.fy, intr.ppx, intr.ppy = W, H, 50.0, 51.0, 31.5, 23.5
    intr.model, intr.coeffs = rs.distortion.brown_conrady, [0.1, 0.0, 0.0, 0.0, 0.0]
    sensors, profiles = [], []
    for uid, (name, stype, fmt, bpp) in enumerate(
        [
            ("Depth", rs.stream.depth, rs.format.z16, 2),
            ("Color", rs.stream.color, rs.format.bgr8, 3),
            ("Infrared", rs.stream.infrared, rs.format.y8, 1),
        ]
    ):
        sensor = sd.add_sensor(name)
        vs = rs.video_stream()
        vs.type, vs.index, vs.uid, vs.width, vs.height = stype, 0, uid, W, H
        vs.fps, vs.bpp, vs.fmt, vs.intrinsics = FPS, bpp, fmt, intr
        profiles.append(sensor.add_video_stream(vs))
        if name == "Depth":
            sensor.add_read_only_option(rs.option.depth_units, depth_units)
        sensors.append(sensor)
    ext = rs.extrinsics()
    ext.rotation = list(EXT_ROTATION.T.ravel())  # the SDK's rotation is column-major
    ext.translation = list(EXT_TRANSLATION)
    profiles[0].register_extrinsics_to(profiles[1], ext)
    recorder = rs.recorder(str(path), sd)
    queue = rs.frame_queue(100)
    for sensor, prof in zip(sensors, profiles, strict=True):
        sensor.open(prof)
        sensor.start(queue)
    depths = []
    for i in range(frames):
        depth = (np.arange(W * H, dtype=np.uint16).reshape(H, W) * 3 + 100 * i).astype(np.uint16)
        depths.append(depth)
        images = [depth, np.full((H, W, 3), i * 20, np.uint8), np.full((H, W), i * 10, np.uint8)]
        for sensor, prof, img in zip(sensors, profiles, images, strict=True):
            f = rs.software_video_frame()
            f.pixels, f.bpp = img, img.itemsize * (3 if img.ndim == 3 else 1)
            f.stride, f.timestamp = W * f.bpp, i * 1000 / FPS
            f.domain, f.frame_number = rs.timestamp_domain.hardware_clock, i
            f.profile = prof.as_video_stream_profile()
            sensor.on_video_frame(f)
        time.sleep(1 / FPS)
    for sensor in sensors:
        sensor.stop()
        sensor.close()
    del recorder
    return depths


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[np.ndarray]]:
    path = tmp_path_factory.mktemp("rs") / "synthetic.db3"
    return path, _record(path, 0.001)


def test_a_recording_plays_as_the_device(recording: tuple[Path, list[np.ndarray]]) -> None:
    path, depths = recording
    dev = RealSenseDevice(playback=path, real_time=False, loop=False)
    assert dev.serial == "8123456" and dev.id == "realsense-8123456"
    assert set(dev.streams) == {StreamKind.depth, StreamKind.color, StreamKind.infrared}
    intr = dev.streams[StreamKind.depth].intrinsics
    assert intr is not None and (intr.fx, intr.fy, intr.cx, intr.cy) == (50.0, 51.0, 31.5, 23.5)
    frames = check_device(dev, frames_per_stream=3)
    for f in frames[StreamKind.depth]:
        # 1 mm depth units: millimetres as recorded, bit for bit (the index comes from the
        # synthetic pattern, since the recorder may drop the very first frame)
        i = int(f.array[0, 0]) // 100
        assert np.array_equal(f.array, depths[i])
    assert frames[StreamKind.infrared][0].array.dtype == np.uint16
    assert frames[StreamKind.color][0].array.shape == (H, W, 3)


def test_depth_is_converted_to_millimetres_with_the_depth_scale(tmp_path: Path) -> None:
    path = tmp_path / "fine.db3"
    depths = _record(path, 0.0001, frames=6)  # 100 um units, as some models use
    dev = RealSenseDevice(playback=path, real_time=False, loop=False)
    frame = check_device(dev, frames_per_stream=2)[StreamKind.depth][0]
    i = round(float(frame.array[0, 0]) * 10) // 100
    assert dev._scale == pytest.approx(0.0001)  # as the SDK reports it (a float32)
    expected = np.rint(depths[i] * (dev._scale * 1000.0)).astype(np.uint16)
    assert np.array_equal(frame.array, expected)
    assert abs(int(frame.array[-1, -1]) - depths[i][-1, -1] / 10) <= 0.5


def test_a_recording_served_to_a_client(recording: tuple[Path, list[np.ndarray]]) -> None:
    path, _ = recording
    with Server(address="127.0.0.1", announce=False) as srv:
        srv.add_device(RealSenseDevice(playback=path))  # real time, looping
        with Client(next(iter(srv.endpoints.values()))) as client:
            rec = client.devices["realsense-8123456"]
            assert rec.streams["depth"]["intrinsics"]["fx"] == 50.0
            frame = client.subscribe(rec.id, "depth").get(timeout=10)
    assert frame.array.shape == (H, W) and frame.units == "mm"


def test_the_sdk_calibration_travels_intrinsics_and_extrinsics(
    recording: tuple[Path, list[np.ndarray]],
) -> None:
    """What the SDK says (stream intrinsics, ``get_extrinsics_to``) reaches a client as the
    calibration, read through the real SDK's playback."""
    path, _ = recording
    with Server(address="127.0.0.1", announce=False) as srv:
        srv.add_device(RealSenseDevice(playback=path))
        with Client(next(iter(srv.endpoints.values()))) as client:
            cal = client.calibration("realsense-8123456")
    assert cal.depth is not None and cal.color is not None and cal.depth_to_color is not None
    assert (cal.depth.fx, cal.depth.cx, cal.depth.model) == (50.0, 31.5, "plumb_bob")
    assert cal.depth.distortion == pytest.approx((0.1, 0.0, 0.0, 0.0, 0.0))
    np.testing.assert_allclose(cal.depth_to_color.R, EXT_ROTATION, atol=1e-6)
    np.testing.assert_allclose(cal.depth_to_color.translation, EXT_TRANSLATION, atol=1e-6)
    assert cal.source.startswith("realsense sdk") and cal.depth_units == 0.001
