"""Zenoh: servers publishing, a bridge, routers, wildcard consumers, presence and metadata.

Loopback only: every session has explicit tcp/127.0.0.1 endpoints and multicast scouting off.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from rgbdcast import MockDevice, Server, StreamKind
from rgbdcast.errors import UsageError
from rgbdcast.protocol.zkeys import key_chunk, parse_stream_key, stream_key
from rgbdcast.testing import wait_for

zenoh = pytest.importorskip("zenoh", reason="the [zenoh] extra is not installed")

from rgbdcast.bridge import Bridge  # noqa: E402
from rgbdcast.outlets.zenoh import ZenohLink, ZenohOptions, ZenohOutlet  # noqa: E402
from rgbdcast.zclient import ZenohClient  # noqa: E402

COLOR = (160, 90)


pytestmark = pytest.mark.threads_only


SERVE = [sys.executable, "-m", "rgbdcast.cli", "serve", "--no-announce", "--no-web"]
SERVE += ["--port", "0", "--color-size", "160x90", "--quiet"]


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ep(port: int) -> str:
    return f"tcp/127.0.0.1:{port}"


def _frames(sub: Any, seconds: float) -> list[Any]:
    out = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            out.append(sub.get(timeout=max(0.01, deadline - time.monotonic())))
        except TimeoutError:
            break
    return out


# -- keys (pure) -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "chunk"),
    [
        ("rgbdcast on vm", "rgbdcast-on-vm"),
        ("site/a*b$c?d#e", "site-a-b-c-d-e"),
        ("@admin", "admin"),
        ("", "unnamed"),
        ("Küche 1", "K-che-1"),
        ("kinect.v2_0", "kinect.v2_0"),
    ],
)
def test_names_become_valid_key_chunks(name: str, chunk: str) -> None:
    assert key_chunk(name) == chunk
    zenoh.KeyExpr(stream_key(name, name, "depth"))  # Zenoh accepts it


def test_stream_keys_parse_back_and_others_are_refused() -> None:
    assert parse_stream_key("rgbdcast/lab/mock0/depth") == ("lab", "mock0", "depth")
    for bad in ("rgbdcast/lab/mock0", "other/lab/mock0/depth", "rgbdcast/lab/@meta/x"):
        with pytest.raises(UsageError):
            parse_stream_key(bad)


# -- a server publishing -----------------------------------------------------------------------


@pytest.fixture
def zserver() -> Iterator[tuple[Server, str]]:
    port = _port()
    srv = Server(
        address="127.0.0.1",
        announce=False,
        name="lab one",
        outlets=[ZenohOutlet(ZenohOptions(listen=[_ep(port)]))],
    )
    srv.add_device(MockDevice("cam-a", color_size=COLOR))
    srv.add_device(MockDevice("cam-b", color_size=COLOR, streams=["depth"]))
    srv.start()
    yield srv, _ep(port)
    srv.stop()


def test_frames_arrive_decoded_and_exact(zserver: tuple[Server, str]) -> None:
    srv, ep = zserver
    reference = MockDevice("cam-a", color_size=COLOR)
    with ZenohClient(connect=[ep]) as zc:
        sub = zc.subscribe("rgbdcast/lab-one/cam-a/depth")
        got = _frames(sub, 1.5)
        assert len(got) >= 10
        for frame in got[:5]:
            ref = next(f for f in reference.render(frame.seq) if f.kind is StreamKind.depth)
            assert frame.device_id == "cam-a" and np.array_equal(frame.array, ref.array)
        snap = sub.per_key["rgbdcast/lab-one/cam-a/depth"].snapshot(time.time_ns())
        assert snap.fps > 10 and snap.dropped <= 2  # DROP: a busy moment may cost a frame
        raw = zc.subscribe("rgbdcast/lab-one/cam-a/color", decode=False)
        enc = raw.get(timeout=5)
        assert enc.header.codec == "jpeg" and enc.raw_header.startswith(b"RGBD\x01")
    stats = srv.stats()["zenoh"]
    assert stats["rgbdcast/lab-one/cam-a/depth"]["sent"] >= 10


def test_a_wildcard_spans_devices_and_streams(zserver: tuple[Server, str]) -> None:
    _, ep = zserver
    with ZenohClient(connect=[ep]) as zc:
        kinds = Counter(
            (f.device_id, f.kind.value)
            for f in _frames(zc.subscribe("rgbdcast/*/*/depth", queue_size=8), 1.5)
        )
        assert kinds[("cam-a", "depth")] > 5 and kinds[("cam-b", "depth")] > 5
        everything = {
            (f.device_id, f.kind.value)
            for f in _frames(zc.subscribe("rgbdcast/**", queue_size=16), 1.5)
        }
    assert everything == {
        ("cam-a", "color"),
        ("cam-a", "depth"),
        ("cam-a", "infrared"),
        ("cam-a", "body"),
        ("cam-b", "depth"),
    }


def test_late_joiners_get_presence_and_metadata_at_once(zserver: tuple[Server, str]) -> None:
    srv, ep = zserver
    with ZenohClient(connect=[ep]) as zc:
        assert zc.devices() == ["rgbdcast/lab-one/cam-a", "rgbdcast/lab-one/cam-b"]
        info = zc.meta("lab-one", "cam-a")
        assert info["id"] == "cam-a" and set(info["streams"]) == set(StreamKind)
        cal = zc.meta("lab-one", "cam-a", "calibration/depth")
        assert cal["width"] == 512 and cal["fx"] > 0
        # the device's whole calibration is one more @meta query, and round-trips
        device = next(d for d in srv.devices if d.id == "cam-a")
        assert zc.calibration("lab-one", "cam-a") == device.calibration()
        assert zc.meta("lab-one", "nobody", timeout=0.5) is None
        srv.remove_device("cam-b")  # gone: its token goes
        assert wait_for(lambda: zc.devices() == ["rgbdcast/lab-one/cam-a"], 10.0)


def test_presence_disappears_when_a_server_is_killed() -> None:
    port = _port()
    router = ZenohLink(ZenohOptions(mode="router", listen=[_ep(port)]))
    proc = subprocess.Popen(
        [*SERVE, "--name", "doomed", "--zenoh", "--zenoh-connect", _ep(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and "serving" in proc.stdout.readline()
        with ZenohClient(connect=[_ep(port)]) as zc:
            assert wait_for(lambda: zc.devices() == ["rgbdcast/doomed/mock0"], 10.0)
            events: list[Any] = []
            watcher = zc.session.liveliness().declare_subscriber(
                "rgbdcast/**", lambda s: events.append((str(s.key_expr), s.kind))
            )
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and not any(
                k == zenoh.SampleKind.DELETE for _, k in events
            ):
                time.sleep(0.1)
            watcher.undeclare()
            assert ("rgbdcast/doomed/mock0", zenoh.SampleKind.DELETE) in events
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=10)
        router.close()


# -- bridge and routers ------------------------------------------------------------------------


def test_a_bridge_through_two_routers_in_a_chain() -> None:
    port_a, port_b = _port(), _port()
    with (
        ZenohLink(ZenohOptions(mode="router", listen=[_ep(port_a)])),
        ZenohLink(ZenohOptions(mode="router", listen=[_ep(port_b)], connect=[_ep(port_a)])),
        Server(address="127.0.0.1", announce=False, name="zmq only") as srv,
    ):
        srv.add_device(MockDevice("cam", color_size=COLOR, streams=["depth", "body"]))
        control = next(iter(srv.endpoints.values()))
        with ZenohLink(ZenohOptions(mode="client", connect=[_ep(port_a)])) as link:
            bridge = Bridge(link, [control])
            bridge.start()
            try:
                assert wait_for(lambda: bridge.bridged.get(control) == ["cam"], 10.0)
                with ZenohClient(connect=[_ep(port_b)]) as zc:  # the far side of router B
                    got = _frames(zc.subscribe("rgbdcast/zmq-only/cam/*", queue_size=8), 2.0)
                    assert {f.kind for f in got} == {StreamKind.depth, StreamKind.body}
                    assert zc.meta("zmq-only", "cam")["name"]
                    srv.remove_device("cam")  # the bridge withdraws it
                    assert wait_for(lambda: zc.devices() == [], 10.0)
            finally:
                bridge.stop()


def test_a_slow_consumer_does_not_hold_back_a_fast_one(zserver: tuple[Server, str]) -> None:
    _, ep = zserver
    done = threading.Event()  # then the slow callback's backlog drains at once: zenoh runs
    # it on a non-daemon thread, which would otherwise hold the test process open for a minute
    with ZenohClient(connect=[ep]) as fast, ZenohClient(connect=[ep]) as slow:
        stalled = slow.session.declare_subscriber(
            "rgbdcast/lab-one/cam-a/depth", lambda s: done.wait(0.5)
        )
        try:
            time.sleep(0.5)
            got = _frames(fast.subscribe("rgbdcast/lab-one/cam-a/depth"), 3.0)
        finally:
            done.set()
            stalled.undeclare()
    assert len(got) >= 60  # about 30 fps while the other one takes two a second


def test_a_client_without_endpoints_is_told_what_to_do() -> None:
    with pytest.raises(UsageError, match="--connect"):
        ZenohClient()
    with pytest.raises(UsageError, match="Zenoh session"):
        ZenohLink(ZenohOptions(listen=["nonsense/1.2.3.4"]))


def test_stats_and_view_accept_zenoh_sources(zserver: tuple[Server, str]) -> None:
    import json as _json

    from websockets.sync.client import connect

    from rgbdcast.outlets.webviewer import WebViewer
    from rgbdcast.protocol.viewer import parse_frame_message
    from rgbdcast.remoteview import ZenohBackend

    _, ep = zserver
    out = subprocess.run(
        [*SERVE[:3], "stats", "--zenoh", "rgbdcast/*/cam-b/*", "--connect", ep, "--duration", "2"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    row = next(ln for ln in out.stdout.splitlines() if ln.startswith("rgbdcast/lab-one/cam-b"))
    assert float(row.split()[1]) > 10  # fps

    backend = ZenohBackend("rgbdcast/lab-one/**", [ep])
    viewer = WebViewer("127.0.0.1", 0, backend)
    viewer.start()
    backend.start(viewer)
    try:
        assert wait_for(lambda: any(d["state"] == "live" for d in backend.devices()), 10.0)
        seen: Counter[str] = Counter()
        with connect(f"ws://127.0.0.1:{viewer.port}/ws", max_size=None) as ws:
            deadline = time.monotonic() + 3
            while time.monotonic() < deadline:
                msg = ws.recv(timeout=3)
                if isinstance(msg, bytes):
                    header, _ = parse_frame_message(msg)
                    key = f"{header['device']}/{header['stream']}"
                    seen[key] += 1
                    ws.send(_json.dumps({"type": "ack", "key": key}))
        assert seen["lab-one|cam-b/depth"] > 5 and seen["lab-one|cam-a/color"] > 5
    finally:
        backend.stop()
        viewer.stop()


def test_video_travels_as_sent_and_a_late_subscriber_asks_for_a_keyframe() -> None:
    """Zenoh carries the units as they are; a subscriber that starts mid-chain shows nothing
    until the keyframe it asked for through the device's @meta queryable."""
    pytest.importorskip("av", reason="the [video] extra (PyAV) is not installed")
    port = _port()
    srv = Server(
        address="127.0.0.1",
        announce=False,
        name="vid",
        codecs={"color": "h264"},
        codec_params={"color": {"gop": 300, "encoder": "x264"}},
        outlets=[ZenohOutlet(ZenohOptions(listen=[_ep(port)]))],
    )
    dev = MockDevice("cam", color_size=(320, 180), streams=["color"])
    srv.add_device(dev)
    srv.start()
    key = "rgbdcast/vid/cam/color"
    try:
        with ZenohClient(connect=[_ep(port)]) as first:
            raw = first.subscribe(key, decode=False, queue_size=64)
            units = _frames(raw, 1.0)
            assert units and {u.header.codec for u in units} == {"h264"}
            time.sleep(0.6)  # the stream is well past its first keyframe
            with ZenohClient(connect=[_ep(port)]) as late:
                sub = late.subscribe(key, queue_size=64)
                got = _frames(sub, 2.0)
                state = sub.videos[key]
        assert got and state.requests >= 1 and state.decoder is not None
        assert state.decoder.skipped >= 1  # it did join mid-chain
        stats = srv.stats()["streams"]["cam/color"]
        assert stats["keyframe_requests"] >= 1 and stats["keyframes_forced"] >= 1
        for frame in got[:5]:
            ref = dev.render(frame.seq)[0].array.astype(np.float32)
            err = np.mean((frame.array.astype(np.float32) - ref) ** 2)
            assert 10 * np.log10(255**2 / err) > 30
    finally:
        srv.stop()
