"""OpenCV sources on real files the tests write (real OpenCV, real codecs, no camera)."""

from __future__ import annotations

import json
import os
import socket
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

if os.environ.get("CI"):  # CI installs the [webcam] extra: a failed import is a failure there
    import cv2 as cv2
else:
    cv2 = pytest.importorskip("cv2", reason="the [webcam] extra is needed")

from rgbdcast import Client, DeviceError, MockDevice, Server, StreamKind, UsageError
from rgbdcast.devices.opencv import OpenCVDevice
from rgbdcast.outlets.gateway import TcpGatewayOutlet
from rgbdcast.testing import check_device, recv_exact, wait_for


def _video(
    path: Path, frames: int = 12, size: tuple[int, int] = (64, 48), fps: float = 30.0
) -> list[np.ndarray]:
    """Write an MJPG video whose frames are flat grey levels 20, 40, 60, ..."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, size)
    assert writer.isOpened()
    written = []
    for i in range(frames):
        img = np.full((size[1], size[0], 3), 20 * (i + 1) % 256, np.uint8)
        writer.write(img)
        written.append(img)
    writer.release()
    return written


def test_a_video_file_passes_the_conformance_suite(tmp_path: Path) -> None:
    path = tmp_path / "clip.avi"
    written = _video(path)
    dev = OpenCVDevice(str(path), loop=False, fps=200)
    assert dev.id == "file-clip-avi"
    frames = check_device(dev, frames_per_stream=12)[StreamKind.color]
    assert [f.array.shape for f in frames[:3]] == [(48, 64, 3)] * 3
    levels = [float(f.array.mean()) for f in frames[:12]]
    expected = [float(w.mean()) for w in written]
    # the file's frames, in order (MJPG is lossy: allow a grey level or two)
    assert all(abs(a - b) <= 2.5 for a, b in zip(levels, expected, strict=True)), levels
    assert dev.streams[StreamKind.color].fps == 200
    assert dev.finished  # played once, then stopped delivering (not a failure)


def test_a_looping_video_plays_at_its_own_rate(tmp_path: Path) -> None:
    path = tmp_path / "loop.avi"
    _video(path, frames=4, fps=50.0)
    dev = OpenCVDevice(str(path))  # loops, at the file's 50 fps
    frames = check_device(dev, frames_per_stream=10)[StreamKind.color]
    assert dev.streams[StreamKind.color].fps == pytest.approx(50.0)
    assert round(float(frames[0].array.mean())) == round(float(frames[4].array.mean()))
    span = (frames[9].host_time_ns - frames[0].host_time_ns) / 1e9
    assert 0.1 < span < 1.0  # paced at ~50 fps, not as fast as possible


def test_a_still_image_is_served_at_the_chosen_rate(tmp_path: Path) -> None:
    path = tmp_path / "still.png"
    img = np.random.default_rng(1).integers(0, 256, (30, 40, 3), dtype=np.uint8)
    assert cv2.imwrite(str(path), img)
    dev = OpenCVDevice(str(path), fps=100)
    frames = check_device(dev, frames_per_stream=5)[StreamKind.color]
    assert all(np.array_equal(f.array, img) for f in frames)
    info = dev.streams[StreamKind.color]
    assert (info.width, info.height, info.fps) == (40, 30, 100)


def test_sources_that_cannot_open_say_why(tmp_path: Path) -> None:
    with pytest.raises(DeviceError, match="no such file"):
        OpenCVDevice(str(tmp_path / "missing.avi"))
    with pytest.raises(DeviceError, match="did not open"):
        OpenCVDevice(7).start()
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    with pytest.raises(DeviceError, match="cannot read"):
        OpenCVDevice(str(bad)).start()


def test_a_video_file_through_the_server_reports_what_it_delivers(tmp_path: Path) -> None:
    path = tmp_path / "served.avi"
    _video(path, frames=6, size=(80, 60), fps=25.0)
    with Server(address="127.0.0.1", announce=False) as srv:
        srv.add_device(OpenCVDevice(str(path)))
        with Client(next(iter(srv.endpoints.values()))) as client:
            (rec,) = client.devices.values()
            info = rec.streams["color"]
            assert (info["width"], info["height"], info["fps"]) == (80, 60, 25.0)
            assert rec.info["body_tracking"] is False
            frame = client.subscribe(rec.id, "color").get(timeout=5)
    assert frame.array.shape == (60, 80, 3)


def _packets(path: Path) -> list[bytes]:
    """The file's JPEG packets, as OpenCV's raw mode reads them."""
    cap = cv2.VideoCapture(str(path))
    assert cap.set(cv2.CAP_PROP_FORMAT, -1)
    out = []
    while True:
        ok, pkt = cap.read()
        if not ok:
            break
        out.append(pkt.tobytes())
    cap.release()
    return out


def test_a_motion_jpeg_file_goes_out_as_its_own_jpeg(tmp_path: Path) -> None:
    """The file's JPEG packets reach clients byte for byte; nothing on the server decodes or
    re-encodes them; a client decodes them to the file's frames."""
    path = tmp_path / "mjpeg.avi"
    written = _video(path, frames=6, size=(96, 64), fps=30.0)
    packets = _packets(path)
    assert len(packets) == 6
    dev = OpenCVDevice(str(path), fps=60)
    held: list[Any] = []
    dev.on_frame.connect(lambda d, frame=None: held.append(frame), sender=dev, weak=False)
    gateway = TcpGatewayOutlet("127.0.0.1:0")
    with Server(address="127.0.0.1", announce=False, outlets=[gateway]) as srv:
        srv.add_device(dev)
        with Client(next(iter(srv.endpoints.values()))) as client:
            (rec,) = client.devices.values()
            assert rec.streams["color"]["source_codec"] == "jpeg"
            raw = client.subscribe(dev.id, "color", decode=False, queue_size=32)
            got = [raw.get(timeout=5) for _ in range(8)]
        stats = srv.stats()["streams"][f"{dev.id}/color"]
        # the plain-TCP gateway hands out the same packets for GET ... jpeg
        assert gateway.gateway is not None
        with socket.create_connection(("127.0.0.1", gateway.gateway.port), timeout=10) as tcp:
            tcp.sendall(f"GET {dev.id} color jpeg\n".encode())
            (n,) = struct.unpack(">I", recv_exact(tcp, 4))
            head = json.loads(recv_exact(tcp, n))
            assert head["codec"] == "jpeg" and head["shape"] == [64, 96, 3]
            assert recv_exact(tcp, head["size"]) in packets
    assert dev.raw_jpeg
    for f in got:
        assert f.header.codec == "jpeg" and f.header.shape == (64, 96, 3)
        assert bytes(f.payload) == packets[f.seq % 6]
        level = float(f.decode().array.mean())
        assert abs(level - float(written[f.seq % 6].mean())) <= 2.5
    assert stats["passed_through"] >= 8 and stats["passthrough_refused"] == 0
    assert held and not any(fr.decoded for fr in held)
    # on the server, reading the pixels decodes the packet (as OpenCV decodes the file)
    assert held[0].array.shape == (64, 96, 3) and held[0].decoded


def test_a_motion_jpeg_file_is_re_encoded_when_asked(tmp_path: Path) -> None:
    path = tmp_path / "again.avi"
    _video(path, frames=4, size=(96, 64))
    packets = set(_packets(path))
    params = {"color": {"passthrough": False, "quality": 30}}
    with Server(address="127.0.0.1", announce=False, codec_params=params) as srv:
        dev = srv.add_device(OpenCVDevice(str(path), fps=60))
        with Client(next(iter(srv.endpoints.values()))) as client:
            raw = client.subscribe(dev.id, "color", decode=False, queue_size=32)
            got = [raw.get(timeout=5) for _ in range(4)]
        # a frame can reach the client before the publisher thread has counted it as sent
        wait_for(lambda: srv.stats()["streams"][f"{dev.id}/color"]["sent"] >= 4)
        stats = srv.stats()["streams"][f"{dev.id}/color"]
    assert not any(bytes(f.payload) in packets for f in got)
    assert stats["passed_through"] == 0 and stats["sent"] >= 4


def test_serve_video_and_image_from_the_cli(tmp_path: Path) -> None:
    video, image = tmp_path / "a.avi", tmp_path / "b.png"
    _video(video)
    cv2.imwrite(str(image), np.zeros((10, 20, 3), np.uint8))
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "rgbdcast",
            "serve",
            "--port",
            "0",
            "--no-announce",
            "--video",
            str(video),
            "--image",
            str(image),
            "--duration",
            "0.5",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0, res.stderr
    assert "device file-a-avi: color" in res.stdout and "device file-b-png: color" in res.stdout
    assert "mock0" not in res.stdout  # the mock only when asked for, or when nothing else is
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "rgbdcast",
            "serve",
            "--no-announce",
            "--video",
            str(tmp_path / "nope.avi"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 2 and "no such file" in res.stderr and "Traceback" not in res.stderr


def test_devices_lists_what_can_be_served() -> None:
    res = subprocess.run(
        [sys.executable, "-m", "rgbdcast", "devices", "--max-index", "2"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0
    assert "opencv cameras (indices 0-1):" in res.stdout
    assert "realsense:" in res.stdout and "kinect2" in res.stdout
    assert "WARN" not in res.stderr  # OpenCV's own console noise is silenced


def test_a_stream_url_is_read_through_opencv() -> None:
    """An MJPEG-over-HTTP stream served on loopback by the test, read by OpenCV's FFmpeg as
    the JPEGs the server sent (never decoded unless read)."""
    import threading
    import time
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Mjpeg(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
            self.end_headers()
            try:
                for i in range(300):
                    _ok, jpg = cv2.imencode(".jpg", np.full((48, 64, 3), i % 256, np.uint8))
                    sent.add(jpg.tobytes())
                    self.wfile.write(
                        b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: "
                        + str(len(jpg)).encode()
                        + b"\r\n\r\n"
                        + jpg.tobytes()
                        + b"\r\n"
                    )
                    time.sleep(1 / 30)
            except (BrokenPipeError, ConnectionResetError):
                pass

    sent: set[bytes] = set()
    http = ThreadingHTTPServer(("127.0.0.1", 0), Mjpeg)
    thread = threading.Thread(target=http.serve_forever, daemon=True)
    thread.start()
    try:
        dev = OpenCVDevice(f"http://127.0.0.1:{http.server_address[1]}/stream.mjpg")
        assert dev.id.startswith("url-127-0-0-1-")
        frames = check_device(dev, frames_per_stream=5)[StreamKind.color]
        assert dev.raw_jpeg and all(f.encoded and f.encoded.payload in sent for f in frames)
        assert frames[0].array.shape == (48, 64, 3)
        info = dev.streams[StreamKind.color]
        assert (info.width, info.height) == (64, 48)
    finally:
        http.shutdown()
        http.server_close()
        thread.join(5)


SERVE = [sys.executable, "-m", "rgbdcast", "serve", "--no-announce"]


def _opencv_calibration(path: Path, size: tuple[int, int] | None = (640, 480)) -> None:
    """A calibration file as OpenCV's calibration sample writes it (cv2.FileStorage)."""
    fs = cv2.FileStorage(str(path), cv2.FILE_STORAGE_WRITE)
    if size is not None:
        fs.write("image_width", size[0])
        fs.write("image_height", size[1])
    k = np.array([[600.0, 0, 319.5], [0, 602.0, 239.5], [0, 0, 1]])
    fs.write("camera_matrix", k)
    fs.write("distortion_coefficients", np.array([[0.11, -0.21, 0.001, -0.002, 0.05]]))
    fs.release()


def test_a_webcam_calibration_file_travels_and_nothing_is_claimed_without_one(
    tmp_path: Path,
) -> None:
    still = tmp_path / "still.png"
    cv2.imwrite(str(still), np.full((240, 320, 3), 90, np.uint8))  # half the calibrated size
    yml = tmp_path / "cam.yml"
    _opencv_calibration(yml)
    odd = tmp_path / "odd.png"
    cv2.imwrite(str(odd), np.full((180, 320, 3), 90, np.uint8))  # another aspect ratio
    with Server(address="127.0.0.1", announce=False) as srv:
        srv.add_device(OpenCVDevice(str(still), device_id="cam", calibration=yml))
        srv.add_device(OpenCVDevice(str(still), device_id="bare"))
        srv.add_device(OpenCVDevice(str(odd), device_id="odd", calibration=yml))
        with Client(next(iter(srv.endpoints.values()))) as client:
            assert wait_for(lambda: len(client.who()["devices"]) == 3)
            cal = client.calibration("cam")
            records = {d["id"]: d for d in client.who()["devices"]}
            with pytest.raises(UsageError, match="offers no calibration"):
                client.calibration("bare")
            with pytest.raises(UsageError, match="another aspect ratio"):
                client.calibration("odd")
    assert cal.color is not None and cal.depth is None and cal.depth_to_color is None
    assert (cal.color.width, cal.color.height) == (320, 240)
    assert cal.color.fx == pytest.approx(300.0) and cal.color.cx == pytest.approx(159.5)
    assert cal.color.distortion == pytest.approx((0.11, -0.21, 0.001, -0.002, 0.05))
    assert "scaled from 640x480" in cal.source
    assert "calibration" not in records["bare"] and "calibration_error" not in records["bare"]
    assert "aspect ratio" in records["odd"]["calibration_error"]


def test_a_bad_calibration_file_is_one_line_at_the_cli(tmp_path: Path) -> None:
    still = tmp_path / "still.png"
    cv2.imwrite(str(still), np.full((48, 64, 3), 90, np.uint8))
    bad = tmp_path / "bad.yml"
    bad.write_text("%YAML:1.0\nsomething: 3\n")
    nan = tmp_path / "nan.json"
    doc = MockDevice("x").calibration().to_dict()
    doc["cameras"]["color"]["intrinsics"]["fx"] = float("nan")
    nan.write_text(json.dumps(doc).replace("NaN", "NaN"))
    for path, needle in ((bad, "no camera_matrix"), (nan, "finite"), (tmp_path / "no.yml", "")):
        res = subprocess.run(
            [*SERVE, "--image", str(still), "--calibration", str(path)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
        (line,) = [ln for ln in res.stderr.splitlines() if ln.strip()]
        assert "--calibration" in line and needle in line
