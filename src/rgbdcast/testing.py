"""What tests and users share: a polling helper, the device conformance checks, and an
SDK-shaped Kinect v2 coordinate mapper (``FakeCoordinateMapper``) with known true cameras.

``check_device(device)`` runs a device for a short while and asserts what every adapter must do:
the streams it announces arrive with their announced shapes, dtypes and units, sequence numbers
and timestamps increase, and ``stop()`` leaves no capture thread behind.
"""

from __future__ import annotations

import ctypes
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from .devices.base import Device
from .devices.kinect2map import PointF
from .devices.mock import MockDevice
from .errors import DeviceError
from .frames import Frame, Intrinsics, StreamKind
from .geometry import Extrinsics, project, ray_table

__all__ = [
    "FAKE_COLOR",
    "FAKE_DEPTH",
    "FAKE_DEPTH_TO_COLOR",
    "FakeCoordinateMapper",
    "UnpluggableMock",
    "check_device",
    "decode_elsewhere",
    "drain",
    "psnr",
    "recv_exact",
    "wait_for",
]


def wait_for(predicate: Callable[[], Any], timeout: float = 5.0, interval: float = 0.02) -> bool:
    """Poll *predicate* until it is true or *timeout* seconds pass; returns its last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


def psnr(image: np.ndarray, reference: np.ndarray) -> float:
    """Peak signal-to-noise ratio of an 8-bit *image* against *reference* (its first three
    channels: BGRA compares as BGR), in dB."""
    err = float(np.mean((image.astype(np.float32) - reference[..., :3].astype(np.float32)) ** 2))
    return float(10 * np.log10(255.0**2 / max(err, 1e-9)))


def drain(subscription: Any, most: int = 400) -> list[Any]:
    """What *subscription* holds now (at most *most* frames), without waiting."""
    out = []
    for _ in range(most):
        try:
            out.append(subscription.get(timeout=0))
        except TimeoutError:
            break
    return out


_DECODE = (
    "import av, sys, numpy as np\n"
    "c = av.open(sys.argv[1], format=sys.argv[3])\n"
    "pics = [f.to_ndarray(format='bgr24') for f in c.decode(video=0)]\n"
    "np.save(sys.argv[2], np.stack(pics) if pics else np.zeros((0, 0, 0, 3), np.uint8))\n"
)


def decode_elsewhere(units: Iterable[bytes], codec: str = "h264") -> np.ndarray:
    """Decode Annex B *units* as one elementary stream in another process, with FFmpeg's own
    demuxer (PyAV): a decoder independent of rgbdcast's. The pictures, BGR, stacked."""
    fmt = {"h264": "h264", "hevc": "hevc", "h265": "hevc"}[codec]
    with tempfile.TemporaryDirectory() as tmp:
        src, out = Path(tmp) / "units", Path(tmp) / "pictures.npy"
        src.write_bytes(b"".join(units))
        subprocess.run(
            [sys.executable, "-c", _DECODE, str(src), str(out), fmt], check=True, timeout=120
        )
        return np.load(out)


def recv_exact(sock: socket.socket, n: int) -> bytes:
    """Exactly *n* bytes from a TCP socket; ``ConnectionError`` if it closes first."""
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError(f"connection closed after {len(buf)} of {n} bytes")
        buf += chunk
    return bytes(buf)


def check_device(
    device: Device, frames_per_stream: int = 3, timeout: float = 10.0
) -> dict[StreamKind, list[Frame]]:
    """Run *device* until each announced stream delivered *frames_per_stream* frames; assert the
    Device contract; return the frames seen. Raises ``AssertionError`` naming what is wrong."""
    announced = device.streams
    assert announced, f"{device.id}: announces no streams"
    got: dict[StreamKind, list[Frame]] = {k: [] for k in announced}
    lock = threading.Lock()

    def on_frame(sender: Device, frame: Frame | None = None, **_: Any) -> None:
        assert frame is not None
        with lock:
            got.setdefault(frame.kind, []).append(frame)

    before = {t for t in threading.enumerate()}
    Device.on_frame.connect(on_frame, sender=device, weak=False)
    try:
        device.start()
        assert device.is_running, f"{device.id}: not running after start()"
        device.start()  # starting twice is harmless
        ok = wait_for(
            lambda: all(len(got[k]) >= frames_per_stream for k in announced), timeout=timeout
        )
        assert ok, f"{device.id}: frames per stream after {timeout} s: " + ", ".join(
            f"{k.value}={len(v)}" for k, v in got.items()
        )
    finally:
        device.stop()
        Device.on_frame.disconnect(on_frame, sender=device)
    device.stop()  # stopping twice is harmless
    assert not device.is_running, f"{device.id}: still running after stop()"

    def leaked() -> list[threading.Thread]:
        return [t for t in threading.enumerate() if t not in before and t.is_alive()]

    wait_for(lambda: not leaked(), timeout=2.0)  # threads already ending get a moment
    assert not leaked(), f"{device.id}: threads left after stop(): {[t.name for t in leaked()]}"
    with lock:
        frames = {k: list(v) for k, v in got.items()}
    extra = set(frames) - set(announced)
    assert not extra, f"{device.id}: delivered unannounced streams {extra}"
    for kind, seen in frames.items():
        info = announced[kind]
        seqs = [f.seq for f in seen]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs), f"{kind}: seq not increasing"
        host = [f.host_time_ns for f in seen]
        assert host == sorted(host) and host[0] > 0, f"{kind}: host times not monotonic"
        dev_t = [f.device_time_ns for f in seen]
        assert dev_t == sorted(dev_t), f"{kind}: device times not monotonic"
        for f in seen:
            assert f.device_id == device.id, f"{kind}: frame from {f.device_id!r}"
            if info.units:
                assert f.units == info.units, f"{kind}: units {f.units!r}, announced {info.units!r}"
            if kind is StreamKind.body:
                assert isinstance(f.data, tuple)
                continue
            arr = f.array
            if info.width and info.height:
                assert arr.shape[:2] == (info.height, info.width), (
                    f"{kind}: shape {arr.shape}, announced {info.width}x{info.height}"
                )
            if info.dtype:
                assert arr.dtype == np.dtype(info.dtype), f"{kind}: dtype {arr.dtype}"
    return frames


class UnpluggableMock(MockDevice):
    """A mock device that can be unplugged (it fails mid-stream, as a device whose cable is
    pulled, and will not reopen) and plugged back in: for testing how clients and viewers see
    a device come and go."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.plugged = True

    def unplug(self) -> None:
        self.plugged = False
        self.on_error.send(self, error=DeviceError("unplugged (testing)"))

    def plug(self) -> None:
        self.plugged = True

    def _open(self) -> None:
        if not self.plugged:
            raise DeviceError("device unplugged (testing)")
        super()._open()


# The fake sensor's true cameras: the depth camera as GetDepthCameraIntrinsics reports it, and
# a color camera 5.2 cm to the side, turned a little, with its own distortion, which the SDK
# publishes nowhere: the adapter must find it from the mapper alone.
FAKE_DEPTH = Intrinsics(
    width=512,
    height=424,
    fx=365.5,
    fy=365.5,
    cx=256.0,
    cy=212.0,
    distortion=(0.09, -0.27, 0.0, 0.0, 0.09),
)
FAKE_COLOR = Intrinsics(
    width=1920,
    height=1080,
    fx=1052.4,
    fy=1053.1,
    cx=961.2,
    cy=537.9,
    distortion=(0.032, -0.048, 0.0008, -0.0004, 0.011),
)
_A = np.radians(0.3)
FAKE_DEPTH_TO_COLOR = Extrinsics.from_matrix(
    [[np.cos(_A), 0, np.sin(_A)], [0, 1, 0], [-np.sin(_A), 0, np.cos(_A)]],
    (0.0521, 0.0012, -0.0009),
)


class FakeCoordinateMapper:
    """``ICoordinateMapper`` as pykinect2 exposes it (comtypes: out-parameters returned, ctypes
    arrays in and out), answering from the true cameras above."""

    def __init__(self, intr: Any = None) -> None:
        self._intr = intr
        self.calls: list[str] = []
        rays = ray_table(FAKE_DEPTH)  # the exact model: rays of the distorted depth camera
        self._table = (PointF * (512 * 424))()
        flat = np.ctypeslib.as_array(
            ctypes.cast(self._table, ctypes.POINTER(ctypes.c_float)), shape=(424, 512, 2)
        )
        flat[..., 0] = rays[..., 0]
        flat[..., 1] = -rays[..., 1]  # camera space: Y up

    def GetDepthCameraIntrinsics(self) -> Any:
        self.calls.append("GetDepthCameraIntrinsics")
        return self._intr

    def GetDepthFrameToCameraSpaceTable(self) -> tuple[int, Any]:
        self.calls.append("GetDepthFrameToCameraSpaceTable")
        return 512 * 424, ctypes.cast(self._table, ctypes.POINTER(PointF))

    def MapCameraPointsToColorSpace(self, n_cam: Any, cams: Any, n_col: Any, cols: Any) -> None:
        self.calls.append("MapCameraPointsToColorSpace")
        n = int(n_cam.value)
        assert int(n_col.value) == n, "the SDK wants as many color points as camera points"
        src = np.ctypeslib.as_array(ctypes.cast(cams, ctypes.POINTER(ctypes.c_float)), (n, 3))
        dst = np.ctypeslib.as_array(ctypes.cast(cols, ctypes.POINTER(ctypes.c_float)), (n, 2))
        optical = src.astype(np.float64) * np.array([1.0, -1.0, 1.0])
        u, v = project(FAKE_DEPTH_TO_COLOR.apply(optical), FAKE_COLOR)
        dst[:, 0], dst[:, 1] = u, v
        dst[~np.isfinite(dst).all(axis=1)] = -np.inf  # what the SDK gives for unmappable points

    def color_xy(self, x: float, y: float, z: float) -> tuple[float, float]:
        u, v = project(FAKE_DEPTH_TO_COLOR.apply(np.array([[x, -y, z]], np.float64)), FAKE_COLOR)
        return float(u[0]), float(v[0])
