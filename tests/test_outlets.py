"""The outlet interface is public and sufficient: an outlet written here, knowing nothing of the
server's insides, sees every device come and go and every frame of the stream it taps."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from rgbdcast import Client, Frame, MockDevice, Server, StreamKind, UsageError
from rgbdcast.outlets import DevicePort, Outlet, OutletHost
from rgbdcast.protocol.envelope import parse_encoded
from rgbdcast.testing import wait_for


class CountingOutlet(Outlet):
    """Counts every device it hears of and every frame of one stream, as delivered and as
    sent; wants that stream encoded while :attr:`want` is true."""

    name = "counting"

    def __init__(self, stream: str = "depth") -> None:
        self.stream = StreamKind(stream)
        self.want = True
        self.events: list[str] = []
        self.delivered: dict[str, list[int]] = defaultdict(list)
        self.sent: dict[str, list[tuple[Frame | None, bytes, Any]]] = defaultdict(list)
        self.host: OutletHost | None = None
        self._lock = threading.Lock()

    def attach(self, host: OutletHost) -> None:
        self.host = host
        self.events.append("attach")

    def start(self) -> None:
        self.events.append("start")

    def stop(self) -> None:
        self.events.append("stop")

    def device_added(self, device: DevicePort) -> None:
        self.events.append(f"+{device.id}")
        port = device.streams.get(self.stream)
        if port is not None:
            port.tap_frames(self._on_frame)
            port.tap_encoded(self._on_sent, lambda: self.want)

    def device_removed(self, device_id: str) -> None:
        self.events.append(f"-{device_id}")

    def _on_frame(self, frame: Frame) -> None:
        with self._lock:
            self.delivered[frame.device_id].append(frame.seq)

    def _on_sent(self, frame: Frame | None, header: bytes, payload: Any) -> None:
        with self._lock:
            assert frame is not None
            self.sent[frame.device_id].append((frame, bytes(header), bytes(payload)))

    def endpoints(self) -> dict[str, str]:
        return {"counting": "counting://here"}

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {dev: len(seqs) for dev, seqs in self.delivered.items()}


def _mock(device_id: str) -> MockDevice:
    return MockDevice(device_id, color_size=(160, 90), streams=["depth", "body"], fps=60.0)


def test_an_outlet_of_our_own_sees_every_device_and_every_frame_of_its_stream() -> None:
    counting = CountingOutlet("depth")
    srv = Server(address="127.0.0.1", announce=False, name="own outlet", outlets=[counting])
    assert counting.host is srv and counting.events == ["attach"]
    assert srv.outlet(CountingOutlet) is counting and srv.outlets == [counting]
    srv.add_device(_mock("mock0"))
    srv.start()
    try:
        assert counting.events == ["attach", "start", "+mock0"]  # started before any device
        srv.add_device(_mock("mock1"))  # added while running: heard of too
        assert counting.events[-1] == "+mock1"
        # nobody subscribes over ZeroMQ: the outlet alone wants depth encoded, and gets it
        assert wait_for(lambda: len(counting.sent["mock1"]) >= 20, 10.0)
        srv.remove_device("mock1")
        assert counting.events[-1] == "-mock1"
        states = {d.id: d.state for d in srv.device_states()}
        assert states == {"mock0": "live"}
        me = srv._me_payload()
        assert me["endpoints"]["counting"] == "counting://here"
        assert srv.stats()["counting"]["mock0"] > 0

        # every frame delivered reaches the frame tap: consecutive numbers, none missing
        seqs = list(counting.delivered["mock0"])
        assert len(seqs) >= 20 and seqs == list(range(seqs[0], seqs[0] + len(seqs)))
        assert sorted(counting.delivered["mock1"]) == counting.delivered["mock1"]
        # every frame sent reaches the encoded tap, exactly as sent
        reference = _mock("mock0")
        for frame, header, payload in counting.sent["mock0"][:5]:
            enc = parse_encoded([header, payload])
            assert enc.header.seq == frame.seq and enc.header.stream is StreamKind.depth
            truth = next(f for f in reference.render(frame.seq) if f.kind is StreamKind.depth)
            assert np.array_equal(enc.decode().array, truth.array)
        key = "mock0/depth"
        sent_taps = len(counting.sent["mock0"])
        assert abs(srv.stats()["streams"][key]["sent"] - sent_taps) <= 1  # one may be in flight

        # not wanted and nobody subscribed: not encoded at all
        counting.want = False
        time.sleep(0.2)
        before, idle = len(counting.sent["mock0"]), srv.stats()["streams"][key]["skipped_idle"]
        time.sleep(0.5)
        assert len(counting.sent["mock0"]) == before
        assert srv.stats()["streams"][key]["skipped_idle"] > idle
        # a ZeroMQ subscriber alone makes it encode again, and the tap sees what it is sent
        with Client(next(iter(srv.endpoints.values()))) as client:
            sub = client.subscribe("mock0", "depth", decode=False, queue_size=64)
            got = [sub.get(timeout=5) for _ in range(10)]
        seen = {f.seq for f, _, _ in counting.sent["mock0"]}
        assert {g.header.seq for g in got} <= seen
    finally:
        srv.stop()
    assert counting.events[-2:] == ["-mock0", "stop"]  # devices closed before the outlet stops
    assert srv.stats().get("counting") is None


class _Refusing(CountingOutlet):
    name = "refusing"

    def attach(self, host: OutletHost) -> None:
        if host.secure is None:
            raise UsageError("the refusing outlet wants a secure server")


class _Failing(CountingOutlet):
    name = "failing"

    def start(self) -> None:
        raise UsageError("the failing outlet cannot start")


def test_outlets_refuse_a_configuration_and_a_failed_start_leaves_nothing_running() -> None:
    with pytest.raises(UsageError, match="secure server"):
        Server(address="127.0.0.1", announce=False, outlets=[_Refusing()])
    with pytest.raises(UsageError, match=r"unique names.*counting"):
        Server(address="127.0.0.1", announce=False, outlets=[CountingOutlet(), CountingOutlet()])
    first = CountingOutlet()
    srv = Server(address="127.0.0.1", announce=False, outlets=[first, _Failing()])
    srv.add_device(_mock("mock0"))
    with pytest.raises(UsageError, match="cannot start"):
        srv.start()
    assert not srv.is_running
    assert first.events == ["attach", "start", "stop"]  # stopped again; no device was opened
    port = srv.port
    with Server(address="127.0.0.1", announce=False, port=port) as again:  # the port is free
        assert again.port == port


class _Buggy(CountingOutlet):
    """Raises wherever an outlet can: its taps, wanted(), device_added, stats."""

    name = "buggy"

    def device_added(self, device: DevicePort) -> None:
        for port in device.streams.values():
            port.tap_frames(self._raise)
            port.tap_encoded(self._raise, self._raise)
        raise RuntimeError("buggy outlet: device_added")

    def _raise(self, *args: Any) -> bool:
        raise RuntimeError("buggy outlet: tap")

    def stats(self) -> dict[str, Any]:
        raise RuntimeError("buggy outlet: stats")


def test_an_outlet_that_raises_is_counted_and_nobody_else_loses_a_frame() -> None:
    counting = CountingOutlet("depth")
    srv = Server(address="127.0.0.1", announce=False, outlets=[_Buggy(), counting])
    srv.add_device(_mock("mock0"))
    with srv:
        assert counting.events == ["attach", "start", "+mock0"]  # the next outlet still heard
        with Client(next(iter(srv.endpoints.values()))) as client:
            sub = client.subscribe("mock0", "depth", queue_size=64)
            got = [sub.get(timeout=5) for _ in range(10)]  # the stream goes on
        assert all(g.kind is StreamKind.depth for g in got)
        assert wait_for(lambda: len(counting.delivered["mock0"]) >= 20, 10.0)
        stats = srv.stats()
        assert stats["buggy"] is None and stats["counting"]["mock0"] >= 20
        assert stats["outlet_errors"]["buggy"] >= 2  # device_added, then stats
        depth = stats["streams"]["mock0/depth"]
        # each frame's tap raised once on the device thread and once on the publisher's
        assert depth["tap_errors"] >= depth["frames_in"] // 2 > 0
        assert depth["sent"] >= 10


EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "snapshot_outlet.py"


def test_the_documented_example_outlet_keeps_a_current_picture(tmp_path: Path) -> None:
    """docs/architecture.md's example: an outlet in a file of its own, run as a user would."""
    res = subprocess.run(
        [sys.executable, str(EXAMPLE), str(tmp_path), "--every", "0.3", "--duration", "2"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0, res.stderr
    picture = cv2.imread(str(tmp_path / "mock0.jpg"))
    assert picture is not None and picture.shape == (360, 640, 3)
    assert picture.std() > 5  # the mock's scene, not a blank
    assert "'not_jpeg': 0" in res.stdout and not list(tmp_path.glob("*.partial"))
    written = int(res.stdout.split()[0])
    assert 2 <= written <= 8  # about every 0.3 s for 2 s, never once per frame
