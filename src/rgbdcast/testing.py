"""What tests and users share: a polling helper and the device conformance checks.

``check_device(device)`` runs a device for a short while and asserts what every adapter must do:
the streams it announces arrive with their announced shapes, dtypes and units, sequence numbers
and timestamps increase, and ``stop()`` leaves no capture thread behind.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from .devices.base import Device
from .devices.mock import MockDevice
from .errors import DeviceError
from .frames import Frame, StreamKind

__all__ = ["UnpluggableMock", "check_device", "recv_exact", "wait_for"]


def wait_for(predicate: Callable[[], Any], timeout: float = 5.0, interval: float = 0.02) -> bool:
    """Poll *predicate* until it is true or *timeout* seconds pass; returns its last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


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
