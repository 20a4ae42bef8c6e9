"""The Kinect v2 (Windows SDK) adapter against an SDK-shaped fake of pykinect2's PyKinectRuntime.

No Kinect runtime exists on this machine, so this fake stands in for the hardware. It follows
the SDK's documented shapes and call order: has_new_<kind>_frame() then get_last_<kind>_frame()
returning flat arrays (color BGRA uint8 1920*1080*4, depth and infrared uint16 512*424), body
frames with six bodies of 25 joints (Position.x/y/z, TrackingState), hand states, the coordinate
mapper's projections and depth intrinsics. Its pixels come from the mock scene, so the data is
a plausible room rather than zeros. What runs on a real Kinect is unverified here.
"""

from __future__ import annotations

import ctypes
import threading
import time
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from rgbdcast import Client, JointType, Server, StreamKind, TrackingState
from rgbdcast.devices.kinect2 import (
    SOURCE_BODY,
    SOURCE_COLOR,
    SOURCE_DEPTH,
    SOURCE_INFRARED,
    Kinect2Device,
    with_raw_color,
)
from rgbdcast.devices.scene import KINECT_COLOR, KINECT_DEPTH, Scene
from rgbdcast.geometry import project, ray_table
from rgbdcast.testing import (
    FAKE_COLOR,
    FAKE_DEPTH,
    FAKE_DEPTH_TO_COLOR,
    FakeCoordinateMapper,
    check_device,
    psnr,
    wait_for,
)


class FakePyKinectRuntime:
    """SDK-shaped stand-in for ``pykinect2.PyKinectRuntime.PyKinectRuntime``."""

    def __init__(self, sources: int) -> None:
        self.sources = sources
        # the color camera's images come from its true pose (without its lens distortion)
        r, t = FAKE_DEPTH_TO_COLOR.R, FAKE_DEPTH_TO_COLOR.t
        self.scene = Scene(KINECT_DEPTH, KINECT_COLOR, 0, (r, t))
        self.t0 = time.monotonic()
        self.taken: dict[str, int] = {}
        self.violations: list[str] = []
        self.closed = False
        self._lock = threading.Lock()
        self.color_frame_desc = SimpleNamespace(Width=1920, Height=1080)
        self.depth_frame_desc = SimpleNamespace(Width=512, Height=424)
        intr = SimpleNamespace(
            FocalLengthX=365.5,
            FocalLengthY=365.5,
            PrincipalPointX=256.0,
            PrincipalPointY=212.0,
            RadialDistortionSecondOrder=0.09,
            RadialDistortionFourthOrder=-0.27,
            RadialDistortionSixthOrder=0.09,
        )
        self._mapper = FakeCoordinateMapper(intr)

    def _index(self) -> int:
        return int((time.monotonic() - self.t0) * 30)

    def _has(self, kind: str, bit: int) -> bool:
        ok = bool(self.sources & bit) and self._index() > self.taken.get(kind, -1)
        if ok:
            self.taken.setdefault("_ready_" + kind, 0)
            self.taken["_ready_" + kind] = 1
        return ok

    def _get(self, kind: str) -> int:
        if not self.taken.get("_ready_" + kind):
            self.violations.append(f"get_last_{kind}_frame without has_new_{kind}_frame")
        self.taken["_ready_" + kind] = 0
        i = self._index()
        self.taken[kind] = i
        return i

    def has_new_color_frame(self) -> bool:
        return self._has("color", SOURCE_COLOR)

    def has_new_depth_frame(self) -> bool:
        return self._has("depth", SOURCE_DEPTH)

    def has_new_infrared_frame(self) -> bool:
        return self._has("infrared", SOURCE_INFRARED)

    def has_new_body_frame(self) -> bool:
        return self._has("body", SOURCE_BODY)

    def get_last_color_frame(self) -> np.ndarray:
        bgr = self.scene.color(self._get("color") / 30)
        bgra = np.dstack([bgr, np.full(bgr.shape[:2], 255, np.uint8)])
        return bgra.reshape(-1)  # flat, as the SDK returns it

    def get_last_depth_frame(self) -> np.ndarray:
        return self.scene.depth(self._get("depth") / 30).reshape(-1)

    def get_last_infrared_frame(self) -> np.ndarray:
        return self.scene.infrared(self.scene.depth(self._get("infrared") / 30)).reshape(-1)

    def get_last_body_frame(self) -> Any:
        pose = self.scene.pose(self._get("body") / 30)
        joints = [
            SimpleNamespace(
                JointType=int(jt),
                TrackingState=2,
                Position=SimpleNamespace(x=pose[jt][0], y=pose[jt][1], z=pose[jt][2]),
            )
            for jt in JointType
        ]
        tracked = SimpleNamespace(
            is_tracked=True,
            tracking_id=72057594037930000,
            hand_left_state=2,
            hand_right_state=3,
            joints=joints,
        )
        idle = SimpleNamespace(
            is_tracked=False, tracking_id=0, hand_left_state=0, hand_right_state=0, joints=joints
        )
        return SimpleNamespace(bodies=[idle, tracked, idle, idle, idle, idle])

    def body_joints_to_color_space(self, joints: list[Any]) -> list[Any]:
        return [
            SimpleNamespace(x=u, y=v)
            for u, v in (
                self._mapper.color_xy(j.Position.x, j.Position.y, j.Position.z) for j in joints
            )
        ]

    def body_joints_to_depth_space(self, joints: list[Any]) -> list[Any]:
        return [
            SimpleNamespace(x=u, y=v)
            for u, v in (
                KINECT_DEPTH.project(j.Position.x, j.Position.y, j.Position.z) for j in joints
            )
        ]

    def close(self) -> None:
        self.closed = True


COLOR_FRAMES = 15
"""The event-driven fake renders this many distinct color frames, once each, and repeats them."""


class FakeColorFrame:
    """``IColorFrame`` as the SDK documents it: the raw format (YUY2 on a Kinect v2) and the two
    copies, raw and converted, each into a caller's buffer of a stated capacity."""

    RawColorImageFormat = 5  # ColorImageFormat_Yuy2

    def __init__(self, runtime: FakeEventRuntime, index: int) -> None:
        self.runtime, self.index = runtime, index

    def CopyRawFrameDataToArray(self, capacity: int, array: Any) -> None:
        data = self.runtime.yuy2(self.index)
        if capacity < data.nbytes or ctypes.sizeof(array) < capacity:
            raise OSError("E_INVALIDARG: the buffer is smaller than the raw frame")
        ctypes.memmove(array, data.ctypes.data, data.nbytes)
        self.runtime.copies.append(("raw", capacity))

    def CopyConvertedFrameDataToArray(self, capacity: int, array: Any, fmt: int) -> None:
        self.runtime.copies.append(("converted", fmt))
        raise OSError("the fake converts nothing: its raw frames are YUY2")


class FakeEventRuntime(FakePyKinectRuntime):
    """The fake with pykinect2's event machinery: a thread that calls
    ``handle_color_arrived(index)`` for each new color frame, whose handler asks
    ``_color_frame_reader.GetFrameArrivedEventData(_handles[index])`` for the frame reference
    and acquires an ``IColorFrame`` (:class:`FakeColorFrame`). pykinect2's own handler converts
    to BGRA; :func:`with_raw_color` replaces it."""

    def __init__(self, sources: int) -> None:
        super().__init__(sources)
        self._handles = ["color-frame-arrived"]
        self._color_frame_reader = SimpleNamespace(GetFrameArrivedEventData=self._event_data)
        self.copies: list[tuple[str, int]] = []
        self._rendered: dict[int, np.ndarray] = {}
        self._events_stop = threading.Event()
        self._events = threading.Thread(target=self._event_loop, name="fake-kinect-events")
        self._events.start()

    def yuy2(self, index: int) -> np.ndarray:
        from rgbdcast.devices.yuy2 import bgr_to_yuy2

        key = index % COLOR_FRAMES
        if key not in self._rendered:
            self._rendered[key] = bgr_to_yuy2(self.scene.color(key / 30))
        return self._rendered[key]

    def _event_data(self, handle: str) -> Any:
        assert handle == "color-frame-arrived"
        index = self._index()
        return SimpleNamespace(
            FrameReference=SimpleNamespace(AcquireFrame=lambda: FakeColorFrame(self, index))
        )

    def _event_loop(self) -> None:
        last = -1
        while not self._events_stop.wait(0.005):
            if self.sources & SOURCE_COLOR and self._index() > last:
                last = self._index()
                self.handle_color_arrived(0)

    def handle_color_arrived(self, handle_index: int) -> None:
        self.violations.append("pykinect2's BGRA handler ran")

    def close(self) -> None:
        self._events_stop.set()
        self._events.join(5.0)
        super().close()


def _device(raw: bool = False, **kw: Any) -> tuple[Kinect2Device, list[FakePyKinectRuntime]]:
    made: list[FakePyKinectRuntime] = []
    runtime = with_raw_color(FakeEventRuntime) if raw else FakePyKinectRuntime

    def factory(sources: int) -> FakePyKinectRuntime:
        made.append(runtime(sources))
        return made[-1]

    return Kinect2Device(runtime_factory=factory, **kw), made


def test_kinect2_passes_the_conformance_suite() -> None:
    dev, made = _device()
    frames = check_device(dev, frames_per_stream=3)
    (rt,) = made
    assert rt.sources == SOURCE_COLOR | SOURCE_DEPTH | SOURCE_INFRARED | SOURCE_BODY
    assert rt.violations == [] and rt.closed
    assert frames[StreamKind.color][0].array.shape == (1080, 1920, 4)  # BGRA, as delivered
    depth = frames[StreamKind.depth][0]
    assert depth.array.shape == (424, 512) and depth.units == "mm"
    assert depth.intrinsics is not None and depth.intrinsics.fx == 365.5
    # the SDK's radial terms, as Brown-Conrady k1 k2 (p1 p2 = 0) k3
    assert depth.intrinsics.distortion == (0.09, -0.27, 0.0, 0.0, 0.09)


def test_kinect2_bodies_keep_the_sdk_order_states_and_projections() -> None:
    dev, _ = _device(streams=["body", "depth"])
    frames = check_device(dev, frames_per_stream=2)
    (body,) = frames[StreamKind.body][-1].bodies  # the one tracked body of six
    assert body.tracking_id == 72057594037930000
    assert body.right_hand.name == "Closed" and body.left_hand.name == "Open"
    head = body.joint("Head")
    assert head.state is TrackingState.Tracked
    u, v = KINECT_DEPTH.project(*head.position)
    assert head.depth_xy == (float(u), float(v))
    assert [j.type for j in body.joints] == list(JointType)


def test_kinect2_streams_through_the_server() -> None:
    dev, _ = _device(streams=["color", "body"])
    with Server(address="127.0.0.1", announce=False) as srv:
        srv.add_device(dev)
        with Client(next(iter(srv.endpoints.values()))) as client:
            assert client.devices["kinect2"].info["body_tracking"] is True
            color = client.subscribe("kinect2", "color").get(timeout=10)
            bodies = client.subscribe("kinect2", "body").get(timeout=10)
    assert color.array.shape == (1080, 1920, 3)  # JPEG from BGRA, decoded to BGR
    assert len(bodies.bodies) == 1


def test_the_sdk_calibration_is_fitted_to_the_mapper_within_half_a_pixel() -> None:
    """The Kinect v2 SDK publishes no color intrinsics and no depth-to-color transform: the
    adapter fits them to the mapper on the sensor's host. Over the whole frame, at depths it did
    not sample, the fitted model lands within 0.5 px of where the mapper says."""
    dev, made = _device(streams=["depth", "color"])
    dev.start()
    try:
        assert wait_for(lambda: dev.calibration() is not None, 10)
    finally:
        dev.stop()
    cal = dev.calibration()
    assert cal is not None and cal.color is not None and cal.depth_to_color is not None
    assert cal.tables == ("depth_to_camera_space",) and dev.fit is not None
    assert dev.fit.check_max_px <= 0.5 and cal.fit["rms_px"] <= 0.1
    mapper = made[0]._mapper
    assert mapper.calls.index("GetDepthFrameToCameraSpaceTable") < mapper.calls.index(
        "MapCameraPointsToColorSpace"
    )
    # independent check: random pixels and depths, through the published calibration and the
    # published table, against the mapper's own answer
    table = dev.calibration_table("depth_to_camera_space")
    assert table is not None and table.shape == (424, 512, 2)
    np.testing.assert_allclose(table, ray_table(FAKE_DEPTH), atol=1e-6)
    rng = np.random.default_rng(7)
    rows, cols = rng.integers(0, 424, 3000), rng.integers(0, 512, 3000)
    z = rng.uniform(0.5, 4.5, 3000)
    pts = np.column_stack([table[rows, cols, 0] * z, table[rows, cols, 1] * z, z])
    u, v = project(cal.depth_to_color.apply(pts), cal.color)
    tu, tv = project(FAKE_DEPTH_TO_COLOR.apply(pts), FAKE_COLOR)
    inside = (tu >= 0) & (tu < 1920) & (tv >= 0) & (tv < 1080)
    assert inside.sum() > 2000
    assert np.hypot(u - tu, v - tv)[inside].max() <= 0.5
    np.testing.assert_allclose(cal.depth_to_color.translation, (0.0521, 0.0012, -0.0009), atol=1e-3)


def test_a_linux_client_registers_a_windows_kinect() -> None:
    """What a Linux consumer of a Windows Kinect gets: the fitted calibration and the SDK's
    table over the wire, and a colored cloud whose colors come from the color camera's pose."""
    dev, _ = _device(streams=["depth", "color"])
    with Server(address="127.0.0.1", announce=False) as srv:
        srv.add_device(dev)
        with Client(next(iter(srv.endpoints.values()))) as client:
            assert wait_for(lambda: "calibration" in client.who()["devices"][0], 10)
            cal = client.calibration("kinect2")
            assert cal.source.startswith("kinect2 sdk") and cal.fit["check_max_px"] <= 0.5
            table = client.calibration_table("kinect2")
            assert table is not None and np.array_equal(
                table, dev.calibration_table("depth_to_camera_space")
            )
            with client.subscribe_frameset("kinect2") as sets:
                for _ in range(50):
                    frames = sets.get(timeout=10)
                    if frames[StreamKind.depth].calibration == cal.revision:
                        break
                cloud = client.point_cloud(frames)
    assert frames[StreamKind.color].array.shape == (1080, 1920, 3)
    assert len(cloud) > 100_000 and cloud.frame_id == "kinect2_depth_optical_frame"


def test_kinect2_color_is_the_raw_yuy2_frame_decoded_only_when_read() -> None:
    dev, made = _device(raw=True, streams=["color", "depth"])
    frames = check_device(dev, frames_per_stream=3)
    (rt,) = made
    assert rt.violations == [] and rt.closed
    assert rt.copies and set(rt.copies) == {("raw", 1920 * 1080 * 2)}  # never the SDK's BGRA
    assert dev.streams[StreamKind.color].notes["native"] == "yuy2"
    frame = frames[StreamKind.color][-1]
    assert frame.encoded is not None and frame.encoded.codec == "yuy2"
    assert len(frame.encoded.payload) == 1920 * 1080 * 2
    assert frame.shape == (1080, 1920, 3)
    # the pixels, when someone reads them, are one of the scene's frames (BT.601 round trip)
    best = max(
        psnr(frame.array, rt.scene.color(i / 30))  # type: ignore[attr-defined]
        for i in range(COLOR_FRAMES)
    )
    assert best > 35


def test_kinect2_yuy2_is_encoded_without_bgr_for_jpeg_and_h264() -> None:
    """The server encodes JPEG from the YUY2 planes and H.264 from yuyv422: the publisher
    counts each frame so encoded, and what a client decodes is the scene."""
    for codec in ("jpeg", "h264"):
        if codec == "h264":
            pytest.importorskip("av", reason="the [video] extra (PyAV) is not installed")
        dev, made = _device(raw=True, streams=["color"])
        with Server(address="127.0.0.1", announce=False, codecs={"color": codec}) as srv:
            srv.add_device(dev)
            with Client(next(iter(srv.endpoints.values()))) as client:
                sub = client.subscribe("kinect2", "color")
                got = [sub.get(timeout=15) for _ in range(5)]
            stats = srv.stats()["streams"]["kinect2/color"]
        assert stats["from_source_layout"] >= 5 and stats["encode_errors"] == 0, codec
        scene = made[0].scene  # type: ignore[attr-defined]
        for frame in got:
            assert frame.array.shape == (1080, 1920, 3)
            best = max(psnr(frame.array, scene.color(i / 30)) for i in range(COLOR_FRAMES))
            assert best > 30, codec
