"""Loopback integration tests over real ZeroMQ sockets (127.0.0.1, random ports)."""

from __future__ import annotations

import contextlib
import json
import sys
import threading
import time

import numpy as np
import psutil
import pytest
import zmq

from rgbdcast import (
    Client,
    EndpointType,
    MockDevice,
    ProtocolError,
    Server,
    ServerTimeout,
    StreamKind,
    UsageError,
)
from rgbdcast.devices.base import ThreadedDevice
from rgbdcast.frames import Frame
from rgbdcast.net.addresses import advertise_host
from rgbdcast.testing import wait_for


def _control(endpoint: str, frames: list[bytes], timeout_ms: int = 3000) -> list[bytes]:
    ctx = zmq.Context.instance()
    sock = ctx.socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(endpoint)
    try:
        sock.send_multipart(frames)
        assert sock.poll(timeout_ms), "no reply"
        return sock.recv_multipart()
    finally:
        sock.close(0)


def test_who_me_describes_every_stream(server: Server, endpoint: str) -> None:
    kind, payload = _control(endpoint, [b"\x03"])
    assert kind == b"\x04"
    me = json.loads(payload)
    assert me["version"] == 1 and me["name"] == "test server"
    assert me["endpoints"]["control"] == endpoint
    (dev,) = me["devices"]
    assert dev["id"] == "mock0"
    assert set(dev["endpoints"]) == {"color", "depth", "infrared", "body"}
    for ep in [me["endpoints"]["control"], *dev["endpoints"].values()]:
        assert ep.startswith("tcp://127.0.0.1:") and "0.0.0.0" not in ep
    depth = dev["streams"]["depth"]
    assert (depth["width"], depth["height"], depth["units"]) == (512, 424, "mm")
    assert depth["codec"] == "grad-zstd" and dev["streams"]["color"]["codec"] == "jpeg"
    assert depth["intrinsics"]["fx"] > 0
    assert dev["streams"]["color"]["width"] == 320
    assert dev["body_tracking"] is True


def test_advertised_host_is_never_the_wildcard() -> None:
    host = advertise_host("0.0.0.0")
    assert host != "0.0.0.0" and host.count(".") == 3
    assert advertise_host("127.0.0.1") == "127.0.0.1"


def test_ping_and_server_stats(endpoint: str) -> None:
    pongs = []
    with Client(endpoint) as client:
        rtt = client.ping(lambda: pongs.append(1))
        assert rtt is not None and 0 < rtt < 1.0 and pongs == [1]
        stats = client.server_stats()
        assert set(stats["streams"]) == {
            f"mock0/{k}" for k in ("color", "depth", "infrared", "body")
        }
        assert stats["control"]["requests"] >= 3

        def depth_stats() -> dict[str, int]:
            return dict(client.server_stats()["streams"]["mock0/depth"])

        def taken_by_publisher(stats: dict[str, int]) -> int:
            return stats["frames_in"] - stats["dropped_busy"]

        # the server has just started: let the publisher take a few frames
        wait_for(lambda: taken_by_publisher(depth_stats()) >= 5)
        depth = depth_stats()
        taken = taken_by_publisher(depth)
    # a 30 fps mock is the slow side: the publisher waits for nearly every frame it takes
    assert taken >= 5 and taken // 2 <= depth["waited_for_source"] <= taken


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="thread names via /proc")
def test_threads_carry_their_names_for_top(server: Server, endpoint: str) -> None:
    """`top -H` and py-spy tell the device, publisher and client I/O threads apart."""
    import os

    def names() -> set[str]:
        out = set()
        for tid in os.listdir("/proc/self/task"):
            with contextlib.suppress(OSError), open(f"/proc/self/task/{tid}/comm") as f:
                out.add(f.read().strip())
        return out

    with Client(endpoint) as client:
        client.who()
        seen = names()
    assert {"client-io", "src-mock0", "pub-depth-mock0", "pub-color-mock0"} <= seen, seen


def test_every_stream_arrives_decoded(endpoint: str) -> None:
    with Client(endpoint) as client:
        subs = {k: client.subscribe("mock0", k) for k in StreamKind}
        frames = {k: [s.get(timeout=5) for _ in range(5)] for k, s in subs.items()}
        snap = subs[StreamKind.depth].snapshot()
    depth = frames[StreamKind.depth][-1]
    assert depth.array.shape == (424, 512) and depth.array.dtype == np.uint16
    assert depth.units == "mm" and depth.intrinsics is not None
    assert 500 < np.median(depth.array) < 6000  # a room, in millimetres
    assert frames[StreamKind.color][-1].array.shape == (180, 320, 3)
    assert frames[StreamKind.infrared][-1].array.dtype == np.uint16
    (body,) = frames[StreamKind.body][-1].bodies
    assert len(body.joints) == 25
    seqs = [f.seq for f in frames[StreamKind.depth]]
    assert seqs == sorted(seqs) and len(set(seqs)) == 5
    assert snap.frames >= 5 and snap.latency_p50_ms < 1000 and snap.bytes > 0


def test_frames_captured_together_share_a_frameset_id(endpoint: str) -> None:
    with Client(endpoint) as client:
        d = client.subscribe("mock0", "depth", queue_size=8)
        b = client.subscribe("mock0", "body", queue_size=8)
        time.sleep(0.5)
        depth_sets = {f.frameset_id: f for f in (d.get(timeout=2) for _ in range(6))}
        body_sets = {f.frameset_id: f for f in (b.get(timeout=2) for _ in range(6))}
    common = set(depth_sets) & set(body_sets)
    assert common
    fid = max(common)
    depth, bodies = depth_sets[fid].array, body_sets[fid].bodies
    # the skeleton stands where the person is in that depth image
    spine = bodies[0].joint("SpineMid")
    u, v = (round(c) for c in spine.depth_xy)
    assert abs(int(depth[v, u]) - spine.position[2] * 1000) < 200


@pytest.mark.parametrize(
    "frames,code",
    [
        ([b"\x7f"], 2),
        ([b"\x01", b"{}", b"{}"], 1),
        ([b"\x01\x02"], 1),
        ([b"\x03", b"{not json"], 3),
        ([b"\x03", b"[1,2,3]"], 3),
        ([b"\x03", b"null"], 3),
        ([b"\x02"], 5),
        ([b"\x01", b" " * (1024 * 1024)], 4),
    ],
)
def test_bad_control_messages_get_errors_and_the_server_keeps_serving(
    server: Server, endpoint: str, frames: list[bytes], code: int
) -> None:
    kind, payload = _control(endpoint, frames)
    assert kind == b"\x00"
    err = json.loads(payload)
    assert err["code"] == code and err["reason"]
    assert _control(endpoint, [b"\x01"]) == [b"\x02"]
    assert sum(server.stats()["control"]["errors"].values()) == 1


def test_a_giant_frame_is_refused_unread_and_others_are_served(endpoint: str) -> None:
    ctx = zmq.Context.instance()
    bad = ctx.socket(zmq.REQ)
    bad.setsockopt(zmq.LINGER, 0)
    bad.connect(endpoint)
    bad.send_multipart([b"\x01", b"x" * (3 * 1024 * 1024)])
    assert not bad.poll(500)  # dropped by the server, no reply
    bad.close(0)
    with Client(endpoint) as client:
        assert client.ping() is not None


STUCK = """
import sys, time, zmq
ctx = zmq.Context()
socks = []
for _ in range(3):  # subscribed, never reading (default receive HWM: they fill up)
    s = ctx.socket(zmq.SUB); s.setsockopt(zmq.SUBSCRIBE, b""); s.connect(sys.argv[1])
    socks.append(s)
print("ready", flush=True)
time.sleep(float(sys.argv[2]))
"""


def test_a_stuck_subscriber_does_not_slow_anyone(server: Server, endpoint: str) -> None:
    import subprocess
    import sys

    me = json.loads(_control(endpoint, [b"\x03"])[1])
    color_ep = me["devices"][0]["endpoints"]["color"]
    stuck = subprocess.Popen(
        [sys.executable, "-c", STUCK, color_ep, "30"], stdout=subprocess.PIPE, text=True
    )
    proc = psutil.Process()  # the server lives in this process
    try:
        assert stuck.stdout is not None and stuck.stdout.readline().strip() == "ready"
        with Client(endpoint) as client:
            sub = client.subscribe("mock0", "color")
            time.sleep(1.0)
            rss0 = proc.memory_info().rss
            start = sub.stats.frames
            t0 = time.monotonic()
            while time.monotonic() - t0 < 3.0:
                sub.get(timeout=2)
            got = sub.stats.frames - start
            rss1 = proc.memory_info().rss
    finally:
        stuck.kill()
        stuck.wait()
    assert got >= 3.0 * 30 * 0.8, f"normal subscriber got only {got} frames in 3 s"
    assert rss1 - rss0 < 20e6, f"server memory grew {(rss1 - rss0) / 1e6:.0f} MB"
    pub = server.stats()["streams"]["mock0/color"]
    assert pub["sent"] > 90 and pub["encode_errors"] == 0


def test_encode_once_and_not_at_all_without_subscribers(server: Server, endpoint: str) -> None:
    clients = [Client(endpoint) for _ in range(3)]
    try:
        for c in clients:
            c.connect()
        subs = [c.subscribe("mock0", "depth") for c in clients]
        for s in subs:
            for _ in range(10):
                s.get(timeout=5)
        stats = server.stats()["streams"]
    finally:
        for c in clients:
            c.disconnect()
    depth = stats["mock0/depth"]
    assert depth["sent"] <= depth["frames_in"]  # one send per frame, whatever the subscriber count
    infrared = stats["mock0/infrared"]
    assert infrared["sent"] == 0 and infrared["skipped_idle"] > 0


def test_devices_added_and_removed_while_running_reach_clients(
    server: Server, endpoint: str
) -> None:
    events: list[tuple[str, str]] = []
    client = Client(endpoint, heartbeat_period=100)

    @Client.on_add_device.connect_via(client)
    def added(sender: Client, device_id: str) -> None:
        events.append(("add", device_id))

    @Client.on_remove_device.connect_via(client)
    def removed(sender: Client, device_id: str) -> None:
        events.append(("remove", device_id))

    with client:
        assert events == [("add", "mock0")]
        extra = MockDevice("extra", streams=["depth"], depth_size=(64, 48))
        server.add_device(extra)
        assert wait_for(lambda: ("add", "extra") in events)
        frame = client.subscribe("extra", "depth").get(timeout=5)
        assert frame.array.shape == (48, 64)
        server.remove_device("extra")
        assert wait_for(lambda: ("remove", "extra") in events)
        assert "extra" not in client.kinect_ids
        assert not extra.is_running
    with pytest.raises(UsageError):
        server.remove_device("extra")
    with pytest.raises(UsageError):
        server.add_device(MockDevice("mock0"))


def test_stop_is_quick_releases_ports_and_devices(small_mock: MockDevice) -> None:
    srv = Server(address="127.0.0.1", announce=False)
    srv.add_device(small_mock)
    srv.start()
    port = srv.port
    with Client(next(iter(srv.endpoints.values()))) as client:
        client.subscribe("mock0", "depth").get(timeout=5)
        t0 = time.monotonic()
        srv.stop()
        assert time.monotonic() - t0 < 1.0
    assert not small_mock.is_running and not srv.is_running
    again = Server(address="127.0.0.1", announce=False, port=port)  # rebinds at once
    again.start()
    assert again.port == port
    again.stop()


def test_a_busy_port_is_a_clear_error(server: Server) -> None:
    other = Server(address="127.0.0.1", announce=False, port=server.port)
    with pytest.raises(UsageError, match="choose another --port"):
        other.start()
    assert not other.is_running


def test_a_socket_that_cannot_bind_is_closed_at_once() -> None:
    from rgbdcast.net.sockets import bind_tcp

    ctx = zmq.Context.instance()
    first = ctx.socket(zmq.XPUB)
    port = bind_tcp(first, "127.0.0.1")  # 0: any free port, and it says which
    second = ctx.socket(zmq.XPUB)
    with pytest.raises(zmq.ZMQError):
        bind_tcp(second, "127.0.0.1", port)
    assert second.closed and not first.closed  # nobody else owned it: no socket leaks
    first.close(0)


def test_heartbeat_notices_a_dead_server_and_reconnects(small_mock: MockDevice) -> None:
    srv = Server(address="127.0.0.1", announce=False)
    srv.add_device(small_mock)
    srv.start()
    port = srv.port
    events: list[str] = []
    client = Client(f"tcp://127.0.0.1:{port}", heartbeat_period=100, response_timeout=300)
    Client.on_connect.connect(lambda s: events.append("connect"), sender=client, weak=False)
    Client.on_disconnect.connect(lambda s: events.append("disconnect"), sender=client, weak=False)
    with client:
        sub = client.subscribe("mock0", "depth")
        sub.get(timeout=5)
        srv.stop()
        assert wait_for(lambda: "disconnect" in events, timeout=5)
        assert not client.is_connected
        srv2 = Server(address="127.0.0.1", announce=False, port=port)
        srv2.add_device(MockDevice("mock0", color_size=(64, 48)))
        srv2.start()
        try:
            assert wait_for(lambda: events.count("connect") == 2, timeout=5)
            # the subscription resumes on the new server's (new) data endpoint
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                frame = sub.get(timeout=5)
                if frame.seq < 30:
                    break
            assert client.is_connected and frame.array.shape == (424, 512)
        finally:
            srv2.stop()
    assert events[:3] == ["connect", "disconnect", "connect"]


def test_without_reconnect_a_dead_server_ends_the_client(small_mock: MockDevice) -> None:
    srv = Server(address="127.0.0.1", announce=False)
    srv.add_device(small_mock)
    srv.start()
    client = Client(
        next(iter(srv.endpoints.values())),
        heartbeat_period=100,
        response_timeout=200,
        reconnect=False,
    )
    client.connect()
    sub = client.subscribe("mock0", "depth")
    srv.stop()
    assert wait_for(lambda: sub.closed, timeout=5)
    assert not client.is_connected
    with pytest.raises(UsageError):
        client.ping()


def test_connecting_to_nothing_times_out_clearly() -> None:
    client = Client("tcp://127.0.0.1:9", response_timeout=200)
    with pytest.raises(ServerTimeout):
        client.connect(timeout=0.5)
    assert not client.is_connected


def test_unknown_device_or_stream_is_a_usage_error(endpoint: str) -> None:
    with Client(endpoint) as client:
        with pytest.raises(UsageError, match="not on this server"):
            client.subscribe("nope", "depth")
        with pytest.raises(ValueError):
            client.enable_depth_frames("nope")
        with pytest.raises(ValueError):
            client.subscribe("mock0", "thermal")


def test_unresolvable_advertised_hosts_fall_back_to_the_control_host(endpoint: str) -> None:
    client = Client(endpoint)
    assert client._fix_endpoint("tcp://no-such-host.invalid:1234") == "tcp://127.0.0.1:1234"
    assert client._fix_endpoint("tcp://127.0.0.2:99") == "tcp://127.0.0.2:99"


def test_garbage_on_a_data_endpoint_is_counted_not_fatal() -> None:
    ctx = zmq.Context.instance()
    pub = ctx.socket(zmq.PUB)
    pub.setsockopt(zmq.LINGER, 0)
    port = pub.bind_to_random_port("tcp://127.0.0.1")
    rep = ctx.socket(zmq.REP)
    rep.setsockopt(zmq.LINGER, 0)
    cport = rep.bind_to_random_port("tcp://127.0.0.1")
    me = {
        "version": 1,
        "name": "fake",
        "endpoints": {"control": f"tcp://127.0.0.1:{cport}"},
        "devices": [{"id": "d", "endpoints": {"depth": f"tcp://127.0.0.1:{port}"}}],
    }
    stop = threading.Event()

    def answer() -> None:
        while not stop.is_set():
            if rep.poll(50):
                rep.recv_multipart()
                rep.send_multipart([b"\x04", json.dumps(me).encode()])

    t = threading.Thread(target=answer)
    t.start()
    try:
        with Client(f"tcp://127.0.0.1:{cport}") as client:
            loose = client.subscribe("d", "depth")
            strict = client.subscribe("d", "depth", strict=True)
            time.sleep(0.3)
            good = Frame(device_id="d", kind="depth", seq=1, data=np.ones((2, 2), np.uint16))
            from rgbdcast.protocol.envelope import build_header

            for parts in (
                [b"junk"],
                [b"RGBD\x01{}", b""],
                [build_header(good, "raw", 8, 0), b"\x01" * 8],
            ):
                pub.send_multipart(parts)
            assert loose.get(timeout=5).array.tolist() == [[257, 257], [257, 257]]
            assert loose.bad_frames == 2
            with pytest.raises(ProtocolError):
                strict.get(timeout=5)
    finally:
        stop.set()
        t.join()
        pub.close(0)
        rep.close(0)


class _Unplugged(ThreadedDevice):
    """A source that fails mid-stream (unplugged), refuses to reopen twice, then comes back."""

    kind = "test"

    def __init__(self) -> None:
        super().__init__()
        self.id, self.name, self.n, self.opens = "flaky", "flaky", 0, 0

    @property
    def streams(self):  # type: ignore[no-untyped-def]
        from rgbdcast.devices.base import StreamInfo

        return {StreamKind.depth: StreamInfo(kind=StreamKind.depth, width=4, height=4)}

    def _open(self) -> None:
        from rgbdcast import DeviceError

        self.opens += 1
        if self.opens in (2, 3):
            raise DeviceError("not plugged in")

    def _capture(self, stop: threading.Event) -> list[Frame]:
        time.sleep(0.02)
        self.n += 1
        if self.opens == 1 and self.n > 5:
            raise OSError("device unplugged")
        return [
            Frame(device_id=self.id, kind="depth", seq=self.n, data=np.zeros((4, 4), np.uint16))
        ]


def test_an_unplugged_device_leaves_and_comes_back_under_its_id(
    server: Server, endpoint: str
) -> None:
    events: list[tuple[str, str]] = []
    client = Client(endpoint, heartbeat_period=100)
    Client.on_remove_device.connect(
        lambda s, device_id: events.append(("remove", device_id)), sender=client, weak=False
    )
    Client.on_add_device.connect(
        lambda s, device_id: events.append(("add", device_id)), sender=client, weak=False
    )
    flaky = _Unplugged()
    with client:
        depth = client.subscribe("mock0", "depth")
        server.add_device(flaky)
        assert wait_for(lambda: ("remove", "flaky") in events, timeout=10)
        assert depth.get(timeout=5).array.shape == (424, 512)  # the others go on
        assert wait_for(lambda: events.count(("add", "flaky")) == 2, timeout=15)  # retried
        assert flaky.opens == 4  # failed twice while unplugged, then back
        sub = client.subscribe("flaky", "depth")
        assert sub.get(timeout=5).array.shape == (4, 4)
    assert [d.id for d in server.devices] == ["mock0", "flaky"]


def test_a_device_absent_at_start_is_served_when_it_appears(small_mock: MockDevice) -> None:
    flaky = _Unplugged()
    flaky.opens = 1  # its next two opens fail
    srv = Server(address="127.0.0.1", announce=False)
    srv.add_device(flaky)
    srv.start()  # does not fail: the device is retried in the background
    try:
        with Client(next(iter(srv.endpoints.values())), heartbeat_period=100) as client:
            assert client.kinect_ids == []
            assert wait_for(lambda: client.kinect_ids == ["flaky"], timeout=10)
    finally:
        srv.stop()


def test_endpoints_and_is_running_follow_streamkinect2(small_mock: MockDevice) -> None:
    srv = Server(address="127.0.0.1", announce=False)
    assert not srv.is_running
    srv.add_kinect(small_mock)
    with srv:
        assert srv.is_running and srv.kinects == [small_mock]
        assert set(srv.endpoints) == {EndpointType.control}
        with Client(srv.endpoints[EndpointType.control], connect_immediately=True) as c:
            assert c.endpoints[EndpointType.control] == srv.endpoints[EndpointType.control]
            assert c.kinect_ids == ["mock0"]
        srv.remove_kinect(small_mock)
        assert srv.kinects == []
    assert not srv.is_running


def test_subscribing_without_decoding_yields_the_payload_as_sent(endpoint: str) -> None:
    from rgbdcast import EncodedFrame

    with Client(endpoint) as client:
        raw = client.subscribe("mock0", "depth", decode=False)
        item = raw.get(timeout=5)
        assert isinstance(item, EncodedFrame)
        assert item.header.codec == "grad-zstd" and item.kind is StreamKind.depth
        assert 0 < item.nbytes < 512 * 424 * 2  # compressed, as sent
        frame = item.decode()
        assert frame.array.shape == (424, 512) and frame.seq == item.seq
        assert raw.snapshot().frames >= 1


def test_lazy_frames_decode_when_their_pixels_are_read(endpoint: str) -> None:
    """``decode="lazy"``: a Frame whose image decodes on first read (what a rig uses, so the
    framesets it replaces cost no decoding), equal to an eager decode; a payload that does not
    decode raises CodecError where the pixels are read."""
    from rgbdcast import CodecError, EncodedFrame

    with Client(endpoint) as client:
        for kind in ("depth", "color"):
            lazy = client.subscribe("mock0", kind, decode="lazy").get(timeout=5)
            raw = client.subscribe("mock0", kind, decode=False).get(timeout=5)
            assert isinstance(lazy, Frame) and not lazy.decoded
            assert lazy.shape == raw.header.shape and lazy.units == raw.header.units
            assert lazy.intrinsics is not None and lazy.calibration == raw.header.calib
            pixels = lazy.array
            assert lazy.decoded and pixels.shape == raw.decode().array.shape
        body = client.subscribe("mock0", "body", decode="lazy").get(timeout=5)
        assert len(body.bodies[0].joints) == 25
        raw = client.subscribe("mock0", "depth", decode=False).get(timeout=5)
        eager, late = raw.decode(), raw.lazy()
        assert np.array_equal(late.array, eager.array)
        broken = EncodedFrame(raw.header, b"\x00" * raw.nbytes, raw.raw_header)
        frame = broken.lazy()
        with pytest.raises(CodecError):
            _ = frame.array


def test_every_subscription_of_a_device_follows_it_when_it_comes_back() -> None:
    """A device removed and added again gets new endpoints: each of its subscriptions moves,
    not only the first (the client used to skip every other one while moving them)."""
    srv = Server(address="127.0.0.1", announce=False)
    srv.add_device(MockDevice("back", color_size=(160, 90), prerender=10))
    with srv, Client(f"tcp://127.0.0.1:{srv.port}", connect_immediately=True) as client:
        subs = [client.subscribe("back", k) for k in ("depth", "color", "infrared", "body")]
        for sub in subs:
            sub.get(timeout=5)
        srv.remove_device("back")
        assert wait_for(lambda: "back" not in client.devices, 5)
        srv.add_device(MockDevice("back", color_size=(160, 90), prerender=10))
        assert wait_for(lambda: "back" in client.devices, 5)
        for sub in subs:
            assert sub.endpoint == client.devices["back"].endpoints[sub.kind.value]
            deadline = time.monotonic() + 5
            frame = sub.get(timeout=5)
            while frame.seq > 30 and time.monotonic() < deadline:  # frames of before, queued
                frame = sub.get(timeout=5)
            assert frame.seq <= 30, sub
