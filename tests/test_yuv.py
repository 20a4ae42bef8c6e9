"""YUY2 sources: the planes and BGR conversions (C, numpy fallback and OpenCV agree), JPEG
straight from the planes, and a server that encodes a YUY2 frame without reading its BGR."""

from __future__ import annotations

import numpy as np
import pytest
import simplejpeg

from rgbdcast import Client, MockDevice, Server
from rgbdcast.codecs import get, yuv
from rgbdcast.codecs.yuv import yuy2_planes
from rgbdcast.devices.yuy2 import bgr_to_yuy2, yuy2_source, yuy2_to_bgr
from rgbdcast.errors import DeviceError, UsageError
from rgbdcast.testing import psnr

cv2 = pytest.importorskip("cv2", reason="OpenCV (the [webcam] extra) is the reference here")

W, H = 320, 180


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    return MockDevice("m", color_size=(W, H), streams=["color"]).render(4)[0].array


def test_bgr_to_yuy2_is_opencvs_bt601_video_range(image: np.ndarray) -> None:
    ours = bgr_to_yuy2(image).astype(int)
    theirs = cv2.cvtColor(image, cv2.COLOR_BGR2YUV_YUY2).astype(int)
    assert ours.shape == (H, W, 2) and np.abs(ours - theirs).max() <= 2
    white = bgr_to_yuy2(np.full((1, 2, 3), 255, np.uint8)).reshape(-1)
    assert list(white) == [235, 128, 235, 128]  # video range, neutral chroma


@pytest.mark.parametrize("opencv", [True, False])
def test_yuy2_to_bgr_matches_opencv(image: np.ndarray, opencv: bool, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    packed = cv2.cvtColor(image, cv2.COLOR_BGR2YUV_YUY2)
    want = cv2.cvtColor(packed, cv2.COLOR_YUV2BGR_YUY2).astype(int)
    if not opencv:  # the numpy path, for a machine without OpenCV
        monkeypatch.setitem(__import__("sys").modules, "cv2", None)
    got = yuy2_to_bgr(packed.tobytes(), W, H)
    assert got.shape == (H, W, 3) and np.abs(got.astype(int) - want).max() <= 1


@pytest.mark.parametrize("vsub", [1, 2])
def test_planes_are_jfif_full_range_in_c_and_numpy(
    image: np.ndarray, vsub: int, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    packed = bgr_to_yuy2(image)
    y, u, v = (p.copy() for p in yuy2_planes(packed.tobytes(), W, H, vsub))
    assert y.shape == (H, W) and u.shape == v.shape == (H // vsub, W // 2)
    # JFIF's YCbCr of the same picture (OpenCV's YCrCb is full range)
    ref = cv2.cvtColor(yuy2_to_bgr(packed.tobytes(), W, H), cv2.COLOR_BGR2YCrCb).astype(float)
    assert np.abs(y - ref[..., 0]).mean() < 1.0
    cb = ref[..., 2].reshape(H // vsub, vsub, W // 2, 2).mean(axis=(1, 3))
    assert np.abs(u - cb).mean() < 1.5
    monkeypatch.setattr(yuv, "_native", None)
    slow = yuy2_planes(packed.tobytes(), W, H, vsub)
    for fast, fallback in zip((y, u, v), slow, strict=True):
        assert np.array_equal(fast, fallback)  # the fallback gives the same bytes


@pytest.mark.parametrize("width", [2, 30, 48, 1922])
@pytest.mark.parametrize("vsub", [1, 2])
def test_planes_of_any_bytes_match_the_fallback(width: int, vsub: int, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Every byte value (the clamps at both ends) and widths that leave the C loop's 16-pixel
    blocks a remainder give the numpy fallback's bytes."""
    if yuv._native is None:
        pytest.skip("the C accelerator is not built here")
    height = 6
    data = np.random.default_rng(width + vsub).integers(0, 256, width * height * 2, np.uint8)
    data[: min(512, data.size)] = np.arange(min(512, data.size)) % 256  # the extremes too
    fast = [p.copy() for p in yuy2_planes(data.tobytes(), width, height, vsub)]
    monkeypatch.setattr(yuv, "_native", None)
    slow = yuy2_planes(data.tobytes(), width, height, vsub)
    for a, b in zip(fast, slow, strict=True):
        assert a.shape == b.shape and np.array_equal(a, b)


def test_a_bad_yuy2_image_is_refused() -> None:
    with pytest.raises(DeviceError):
        yuy2_source(b"\0" * 10, 3, 2)  # odd width
    with pytest.raises(DeviceError):
        yuy2_source(b"\0" * 10, 4, 2)  # too few bytes


@pytest.mark.parametrize(("sub", "strips"), [("420", 1), ("420", 2), ("422", 1)])
def test_jpeg_from_the_planes_is_as_good_as_from_bgr(
    image: np.ndarray, sub: str, strips: int
) -> None:
    jpeg = get("jpeg")
    source = yuy2_source(bgr_to_yuy2(image), W, H)
    seen = yuy2_to_bgr(source.payload, W, H)  # what the camera's frame shows
    params = {"quality": 85, "subsampling": sub, "strips": strips}
    ours = jpeg.encode_source(source, params)  # type: ignore[attr-defined]
    assert simplejpeg.decode_jpeg_header(bytes(ours))[2:] == ("YCbCr", sub)
    pic = jpeg.decode(ours, (H, W, 3), "|u1")
    via_bgr = jpeg.decode(jpeg.encode(seen, params), (H, W, 3), "|u1")
    assert psnr(pic, seen) >= psnr(via_bgr, seen) - 0.3 and psnr(pic, seen) > 33
    assert jpeg.encode_source(source, {"subsampling": "444"}) is None  # no chroma for that


@pytest.mark.parametrize("codec", ["jpeg", "png"])
def test_a_server_encodes_yuy2_frames_and_only_converts_where_it_must(codec: str) -> None:
    """The mock delivering YUY2 (``serve --mock-color-layout yuy2``), as a Kinect v2 does."""
    cam = MockDevice("cam", color_size=(W, H), streams=["color"], prerender=6, color_layout="yuy2")
    with Server(address="127.0.0.1", announce=False, codecs={"color": codec}) as srv:
        srv.add_device(cam)
        with Client(next(iter(srv.endpoints.values()))) as client:
            sub = client.subscribe("cam", "color")
            got = [sub.get(timeout=10) for _ in range(4)]
        stats = srv.stats()["streams"]["cam/color"]
    for frame in got:
        (source,) = cam.render(frame.seq % 6)
        assert source.encoded is not None and source.encoded.codec == "yuy2"
        truth = yuy2_to_bgr(source.encoded.payload, W, H)
        floor = 33 if codec == "jpeg" else 60
        assert frame.array.shape == (H, W, 3) and psnr(frame.array, truth) > floor
    if codec == "jpeg":  # from the planes
        assert stats["from_source_layout"] >= 4
    else:  # PNG needs pixels: the frame's BGR, converted once
        assert stats["from_source_layout"] == 0 and stats["encode_errors"] == 0
    with pytest.raises(UsageError):
        MockDevice("x", color_layout="rgb")
