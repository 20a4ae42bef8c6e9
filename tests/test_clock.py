"""Each server's clock against ours: the estimator on made-up probes, then real servers on
loopback whose clocks are skewed on purpose (``Server(clock=...)``, ``serve --clock-offset-ms``)."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pytest
import zmq

from rgbdcast import AsyncClient, Client, MockDevice, Server
from rgbdcast.protocol.clock import ClockSync
from rgbdcast.protocol.control import ErrorCode, error_msg
from rgbdcast.testing import wait_for


def test_the_estimator_keeps_the_fastest_probe_and_tracks_drift() -> None:
    sync = ClockSync(probes=4)
    offset = 37_000_000  # server minus ours
    t = 1_000_000_000_000
    # probes with one-way delays (there, back) in ns: the symmetric, fastest one is the truth
    for there, back in ((900_000, 100_000), (40_000, 40_000), (300_000, 50_000), (70_000, 30_000)):
        t0 = t
        server = t0 + there + offset
        t3 = t0 + there + back
        est = sync.probe(t0, server, t3)
        t += 10_000_000
    assert est is not None and est.rounds == 1
    assert est.offset_ns == pytest.approx(offset, abs=1)
    assert est.uncertainty_ns == pytest.approx(40_000)  # half the best round trip (80 us)
    assert est.describe() == "clock offset: +37.00 ms ± 0.04 ms"
    # a server clock that runs 20 ppm fast: rounds a second apart see it drift
    for k in range(1, 6):
        t = 1_000_000_000_000 + k * 1_000_000_000
        for _ in range(4):
            drifted = offset + 20e-6 * (t - 1_000_000_000_000)
            est = sync.probe(t, int(t + 50_000 + drifted), t + 100_000)
    assert est is not None and est.drift_ppm == pytest.approx(20, abs=0.5)
    assert est.to_local(t + 50_000 + int(offset + 100_000)) == pytest.approx(t + 50_000, abs=2_000)
    # our clock stepping back during a probe says nothing
    assert sync.probe(10, 5, 5) is None


@pytest.fixture
def skewed() -> Iterator[list[tuple[float, Server]]]:
    servers = []
    for off_ms in (-50.0, 0.0, 37.0):
        skew = int(off_ms * 1e6)
        srv = Server(
            "127.0.0.1",
            announce=False,
            name=f"skew {off_ms}",
            clock=lambda skew=skew: time.time_ns() + skew,
        )
        srv.add_device(MockDevice(f"m{len(servers)}", streams=["depth"], fps=30))
        srv.start()
        servers.append((off_ms, srv))
    yield servers
    for _, srv in servers:
        srv.stop()


def test_skewed_servers_are_estimated_within_half_a_millisecond(
    skewed: list[tuple[float, Server]],
) -> None:
    for off_ms, srv in skewed:
        with Client(f"tcp://127.0.0.1:{srv.port}", connect_immediately=True) as client:
            # measured by the client by itself, right after connecting
            assert wait_for(lambda c=client: c.clock is not None, 5.0)
            est = client.clock_offset(fresh=True)
            assert est is not None
            assert abs(est.offset_ns / 1e6 - off_ms) < 0.5, est
            assert 0 < est.uncertainty_ns < 0.5e6
            # frames were stamped in the server's clock; read in ours they are just captured
            dev = srv.devices[0].id
            frame = client.subscribe(dev, "depth").get(timeout=5)
            local = client.local_time_ns(frame.host_time_ns)
            assert local is not None
            age_ms = (time.time_ns() - local) / 1e6
            assert 0 < age_ms < 30, age_ms  # without the correction: off by the skew
            raw_age_ms = (time.time_ns() - frame.host_time_ns) / 1e6  # in two clocks: skewed
            assert abs(raw_age_ms - age_ms + off_ms) < 1.0


def test_the_async_client_estimates_the_same(skewed: list[tuple[float, Server]]) -> None:
    off_ms, srv = skewed[2]

    async def main() -> float:
        async with AsyncClient(f"tcp://127.0.0.1:{srv.port}") as client:
            est = await client.clock_offset()
            assert est is not None
            return est.offset_ns / 1e6

    assert abs(asyncio.run(main()) - off_ms) < 0.5


def test_an_older_server_leaves_the_offset_unknown() -> None:
    """A server without the time request (streamkinect2-era) answers 'unknown type': the
    client says unknown and goes on working."""
    ctx = zmq.Context.instance()
    rep = ctx.socket(zmq.REP)
    rep.setsockopt(zmq.LINGER, 0)
    port = rep.bind_to_random_port("tcp://127.0.0.1")
    me = {"version": 1, "name": "old", "endpoints": {}, "devices": []}
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            if rep.poll(50):
                frames = rep.recv_multipart()
                if frames[0] == b"\x03":
                    rep.send_multipart([b"\x04", json.dumps(me).encode()])
                elif frames[0] == b"\x01":
                    rep.send_multipart([b"\x02"])
                else:
                    rep.send_multipart(error_msg(ErrorCode.unknown_type, "unknown type"))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        with Client(f"tcp://127.0.0.1:{port}", connect_immediately=True) as client:
            assert client.clock_offset() is None
            assert client.local_time_ns(123) is None
            assert client.ping() is not None
        res = subprocess.run(
            [sys.executable, "-m", "rgbdcast", "ping", f"tcp://127.0.0.1:{port}", "-n", "1"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert res.returncode == 0 and "clock offset: unknown" in res.stdout
    finally:
        stop.set()
        thread.join(2)
        rep.close(0)


SERVE = [sys.executable, "-m", "rgbdcast", "serve", "--no-announce", "--no-web"]


def test_serve_with_a_clock_offset_shows_in_ping_and_info() -> None:
    proc = subprocess.Popen(
        [*SERVE, "--port", "0", "--clock-offset-ms", "37", "--streams", "depth"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        m = re.search(r"at (tcp://\S+)", proc.stdout.readline())
        assert m, proc.stderr.read() if proc.stderr else ""
        for cmd in (["ping", m.group(1), "-n", "1"], ["info", m.group(1)]):
            res = subprocess.run(
                [sys.executable, "-m", "rgbdcast", *cmd], capture_output=True, text=True, timeout=30
            )
            line = next(ln for ln in res.stdout.splitlines() if ln.startswith("clock offset:"))
            value = float(re.match(r"clock offset: ([+-][\d.]+) ms ± ([\d.]+) ms", line).group(1))  # type: ignore[union-attr]
            assert abs(value - 37.0) < 0.5, line
    finally:
        proc.terminate()
        proc.wait(10)


def test_the_rig_bench_measures_the_offsets_it_reports() -> None:
    """The figures `rgbdcast bench --suite rig` writes come from this function."""
    from rgbdcast.bench.rig import OFFSETS_MS, clock_runs

    runs = clock_runs(repeats=3)
    assert set(runs) == set(OFFSETS_MS)
    assert all(r["worst_error_ms"] < 0.5 and r["uncertainty_ms"] > 0 for r in runs.values())
