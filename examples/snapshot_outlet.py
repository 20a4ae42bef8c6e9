#!/usr/bin/env python
"""An outlet of our own: keep the newest color picture of every device as a JPEG file.

Every way out of a server besides its ZeroMQ publishers is an *outlet* (docs/architecture.md).
This one writes ``DIR/<device>.jpg`` at most every *every* seconds, from the JPEG the color
stream's publisher already made (nothing is encoded twice), so a web page or a cron job can pick
up a current picture of each camera. It touches no line of the server:

    python examples/snapshot_outlet.py snapshots/ --every 1 --duration 10

The tap runs on the stream's publisher thread and must not wait there, so it only keeps the newest
JPEG; a thread of the outlet's own writes the files (each replaced whole, never half-written).
"""

from __future__ import annotations

import argparse
import os
import threading
import time
from pathlib import Path
from typing import Any

from rgbdcast import Frame, MockDevice, Server, StreamKind
from rgbdcast.outlets import DevicePort, Outlet


class SnapshotOutlet(Outlet):
    """Writes each device's newest color frame to ``<folder>/<device>.jpg`` every *every* s."""

    name = "snapshots"

    def __init__(self, folder: str | os.PathLike[str], every: float = 1.0) -> None:
        if every <= 0:
            raise ValueError("every must be positive")
        self.folder = Path(folder)
        self.every = every
        self._newest: dict[str, bytes] = {}  # device id -> its newest JPEG, not yet written
        self._due: dict[str, float] = {}  # device id -> when its next picture is wanted
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.written = 0
        self.not_jpeg = 0  # color streams sent in another codec: nothing to copy

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self._stop.clear()
        self._thread = threading.Thread(target=self._write_loop, name="snapshots", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def device_added(self, device: DevicePort) -> None:
        port = device.streams.get(StreamKind.color)
        if port is None:
            return
        if port.codec != "jpeg":
            self.not_jpeg += 1
            return

        def tap(frame: Frame | None, header: bytes, payload: Any) -> None:
            now = time.monotonic()
            with self._lock:
                if now >= self._due.get(device.id, 0.0):
                    self._due[device.id] = now + self.every
                    self._newest[device.id] = bytes(payload)  # the publisher reuses its buffer

        # wanted: keep the stream encoded while the outlet runs, even with no ZeroMQ subscriber
        port.tap_encoded(tap, lambda: not self._stop.is_set())

    def device_removed(self, device_id: str) -> None:
        with self._lock:
            self._due.pop(device_id, None)
            self._newest.pop(device_id, None)

    def _write_loop(self) -> None:
        while not self._stop.wait(min(self.every, 0.1)):
            with self._lock:
                pending, self._newest = self._newest, {}
            for device_id, jpeg in pending.items():
                target = self.folder / f"{device_id}.jpg"
                partial = target.with_suffix(".jpg.partial")
                partial.write_bytes(jpeg)
                os.replace(partial, target)
                self.written += 1

    def endpoints(self) -> dict[str, str]:
        return {"snapshots": self.folder.resolve().as_uri()}

    def stats(self) -> dict[str, Any]:
        return {"written": self.written, "not_jpeg": self.not_jpeg}


def main() -> None:
    p = argparse.ArgumentParser(description="Serve the mock device; keep a JPEG of its color.")
    p.add_argument("folder", help="where the pictures go")
    p.add_argument("--every", type=float, default=1.0, help="seconds between pictures")
    p.add_argument("--duration", type=float, default=5.0, help="seconds to serve")
    args = p.parse_args()
    outlet = SnapshotOutlet(args.folder, every=args.every)
    device = MockDevice("mock0", color_size=(640, 360), streams=["color", "depth"])
    server = Server(address="127.0.0.1", announce=False, outlets=[outlet])
    server.add_device(device)
    with server:
        time.sleep(args.duration)
        print(f"{outlet.written} pictures written to {outlet.folder}; stats {outlet.stats()}")


if __name__ == "__main__":
    main()
