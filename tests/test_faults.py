"""Faults end to end: a subscriber killed mid-frame, and a disk that fills up while recording.
(A server restart and a failing device thread are in test_server_client.py.)"""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from rgbdcast import Client, MockDevice, Server, StreamKind
from rgbdcast.record import Recording

CLI = [sys.executable, "-m", "rgbdcast.cli"]

_SUBSCRIBER = """
import sys
from rgbdcast import Client
with Client(sys.argv[1]) as c:
    sub = c.subscribe("mock0", "color", decode=False)
    print("ready", flush=True)
    while True:
        sub.get(timeout=10)
"""


def test_a_subscriber_killed_mid_frame_costs_the_others_nothing() -> None:
    # raw 1080p color: 6 MB frames, so a kill lands in the middle of one
    mock = MockDevice("mock0", streams=["color", "depth"], prerender=5)
    srv = Server(address="127.0.0.1", announce=False, codecs={"color": "raw"})
    srv.add_device(mock)
    srv.start()
    try:
        control = next(iter(srv.endpoints.values()))
        victims = [
            subprocess.Popen(
                [sys.executable, "-c", _SUBSCRIBER, control], stdout=subprocess.PIPE, text=True
            )
            for _ in range(3)
        ]
        for v in victims:
            assert v.stdout is not None and v.stdout.readline().strip() == "ready"
        with Client(control) as client:
            depth = client.subscribe("mock0", "depth", queue_size=64)
            color = client.subscribe("mock0", "color", decode=False)
            depth.get(timeout=10)
            for v in victims:
                time.sleep(0.1)
                os.kill(v.pid, signal.SIGKILL)
                v.wait(10)
            before = depth.snapshot().frames
            time.sleep(2.0)
            assert depth.snapshot().frames - before >= 30  # still about 30 fps
            assert color.get(timeout=5).nbytes == 1920 * 1080 * 3
            frame = depth.get(timeout=5)
            ref = next(f for f in mock.render(frame.seq % 5) if f.kind is StreamKind.depth)
            assert np.array_equal(frame.array, ref.array)
    finally:
        srv.stop()


def _limit_file_size(limit: int) -> None:
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG


@pytest.mark.skipif(not hasattr(resource, "RLIMIT_FSIZE"), reason="needs RLIMIT_FSIZE (Unix)")
def test_a_full_disk_while_recording_is_one_clear_line_and_a_readable_file(
    tmp_path: Path,
) -> None:
    srv = Server(address="127.0.0.1", announce=False)
    srv.add_device(MockDevice("mock0", color_size=(160, 90), streams=["depth", "body"]))
    srv.start()
    out = tmp_path / "full.mcap"
    try:
        control = next(iter(srv.endpoints.values()))
        res = subprocess.run(
            [*CLI, "record", control, "--out", str(out), "--duration", "30"],
            capture_output=True,
            text=True,
            timeout=60,
            preexec_fn=lambda: _limit_file_size(3_000_000),  # the "disk" holds 3 MB
        )
    finally:
        srv.stop()
    assert res.returncode == 2, res.stdout + res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "failed" in lines[0] and "readable" in lines[0], res.stderr
    assert "Traceback" not in res.stderr
    recording = Recording(out).scan()
    assert not recording.closed_properly
    frames = list(recording.frames())
    assert len(frames) >= 5 and recording.skipped == 0
