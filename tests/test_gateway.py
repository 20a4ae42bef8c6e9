"""The plain-TCP gateway, driven the way Camera2TCP's clients drive it, plus the framed mode."""

from __future__ import annotations

import json
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from rgbdcast import MockDevice, Server, StreamKind
from rgbdcast.outlets.gateway import TcpGatewayOutlet
from rgbdcast.protocol.gateway import MAX_COMMAND, CommandParser
from rgbdcast.testing import recv_exact, wait_for

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


# -- the grammar (pure) ---------------------------------------------------------------------
def _kinds(cmds: list) -> list[tuple[str, str]]:  # type: ignore[type-arg]
    return [(c.kind, c.service) for c in cmds]


def test_commands_split_across_segments_are_understood() -> None:
    p = CommandParser()
    assert p.feed(b"Connecting2Ki") == [] and p.feed(b"nectDep") == []
    assert _kinds(p.feed(b"th")) == [("handshake", "KinectDepth")]


def test_commands_arriving_together_are_all_answered() -> None:
    p = CommandParser()
    assert _kinds(p.feed(b"DepthKinectDepthRGBHD")) == [
        ("request", "KinectDepth"),
        ("request", "KinectDepth"),
        ("request", "KinectWebcam"),
    ]
    assert _kinds(p.feed(b"Depth\nRGBHD\r\nSimpleImage\n")) == [
        ("request", "KinectDepth"),
        ("request", "KinectWebcam"),
        ("request", "SimpleImage"),
    ]


def test_a_command_that_may_grow_waits_for_a_quiet_moment() -> None:
    p = CommandParser()
    assert p.feed(b"RGB") == [] and p.ambiguous  # might still become RGBHD or RGBWebcam
    assert _kinds(p.flush()) == [("request", "RGBWebcam")]
    assert p.feed(b"Connecting2Kin") == [] and p.pending and not p.ambiguous
    assert p.flush() == []  # an unfinished command waits longer ...
    assert _kinds(p.expire()) == [("invalid", "")]  # ... then is refused
    assert _kinds(p.feed(b"RGB\n")) == [("request", "RGBWebcam")]


def test_garbage_is_one_invalid_request_and_the_rest_still_parses() -> None:
    p = CommandParser()
    cmds = p.feed(b"hello there\nDepthxyzRGBHD")
    assert [c.kind for c in cmds] == ["invalid", "request", "invalid", "request"]
    assert _kinds(p.feed(b"\x00\xff\xfe")) == [("invalid", "")]
    too_long = p.feed(b"Connecting2" + b"K" * 10)
    assert too_long[0].kind == "invalid"
    p2 = CommandParser()
    assert p2.feed(b"GET " + b"x" * (MAX_COMMAND + 10))[-1].reason == "command too long"


def test_framed_commands() -> None:
    p = CommandParser()
    cmds = p.feed(b"LIST\nGET mock0 depth grad-zstd\nGET mock0 body\nGET x\n")
    assert [(c.kind, c.args) for c in cmds] == [
        ("list", ()),
        ("get", ("mock0", "depth", "grad-zstd")),
        ("get", ("mock0", "body")),
        ("invalid", ()),
    ]
    assert p.feed(b"GET mock0 dep") == [] and p.pending  # waits for its newline


# -- the gateway over real sockets ------------------------------------------------------------
@pytest.fixture
def still_mock() -> MockDevice:
    """A mock that loops one pre-rendered frameset: every reply must equal it exactly."""
    return MockDevice("mock0", color_size=(320, 180), prerender=1)


@pytest.fixture
def gateway_server(still_mock: MockDevice) -> Iterator[Server]:
    srv = Server(
        address="127.0.0.1",
        announce=False,
        outlets=[TcpGatewayOutlet("127.0.0.1:0", max_clients=24, idle_timeout=5.0)],
    )
    srv.add_device(still_mock)
    srv.start()
    yield srv
    srv.stop()


class Camera2TcpClient:
    """Behaves as Camera2TCP's clients: bare commands, handshake, exact-size reads."""

    def __init__(self, port: int, service: str) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.service = service

    def recv_exact(self, n: int) -> bytes:
        return recv_exact(self.sock, n)

    def handshake(self) -> list[int]:
        self.sock.sendall(f"Connecting2{self.service}".encode())
        return [int(v) for v in self.sock.recv(1024).decode().split(",")]

    def depth(self, request: str = "KinectDepth") -> np.ndarray:
        w, h, c = self.handshake()
        self.sock.sendall(request.encode())
        data = np.frombuffer(self.recv_exact(2 * w * h * c), np.uint8)
        hi, lo = data[0::2].astype(np.uint16), data[1::2].astype(np.uint16)
        return ((hi << 8) + lo).reshape(h, w)  # high byte first, as its clients rebuild it

    def color(self, request: str) -> np.ndarray:
        h, w, c = self.handshake()
        self.sock.sendall(request.encode())
        return np.frombuffer(self.recv_exact(h * w * c), np.uint8).reshape(h, w, c)

    def close(self) -> None:
        self.sock.close()


def _frames(dev: MockDevice) -> dict[StreamKind, np.ndarray]:
    return {f.kind: f.data for f in dev._cache[0]}  # type: ignore[misc]


def test_camera2tcp_clients_get_exact_frames(
    gateway_server: Server, still_mock: MockDevice
) -> None:
    assert gateway_server.outlet(TcpGatewayOutlet).gateway is not None
    port = gateway_server.outlet(TcpGatewayOutlet).gateway.port
    truth = _frames(still_mock)
    for service, request in (("KinectDepth", "KinectDepth"), ("KinectDepth", "Depth")):
        c = Camera2TcpClient(port, service)
        assert np.array_equal(c.depth(request), truth[StreamKind.depth])
        c.close()
    for service, request in (
        ("RGBWebcam", "RGB"),
        ("KinectWebcam", "RGBHD"),
        ("SimpleImage", "SimpleImage"),
        ("RGBWebcam", "RGBWebcam"),
    ):
        c = Camera2TcpClient(port, service)
        assert np.array_equal(c.color(request), truth[StreamKind.color])
        c.close()
    c = Camera2TcpClient(port, "KinectSkeleton")
    assert c.handshake() == [6]
    c.sock.sendall(b"KinectSkeleton")
    line = b""
    while not line.endswith(b"\n"):
        line += c.sock.recv(65536)
    (body,) = json.loads(line)["bodies"]
    assert set(body["joints"]) >= {"Head", "SpineBase", "HandTipRight"}
    assert body["joints"]["Head"]["position"][2] > 0.5
    c.close()


def test_sixteen_clients_at_once(gateway_server: Server, still_mock: MockDevice) -> None:
    assert gateway_server.outlet(TcpGatewayOutlet).gateway is not None
    port = gateway_server.outlet(TcpGatewayOutlet).gateway.port
    truth = _frames(still_mock)
    errors: list[str] = []

    def run(i: int) -> None:
        try:
            if i % 2:
                c = Camera2TcpClient(port, "KinectDepth")
                for _ in range(5):
                    if not np.array_equal(c.depth(), truth[StreamKind.depth]):
                        errors.append(f"client {i}: depth differs")
            else:
                c = Camera2TcpClient(port, "RGBWebcam")
                for _ in range(5):
                    if not np.array_equal(c.color("RGB"), truth[StreamKind.color]):
                        errors.append(f"client {i}: color differs")
            c.close()
        except Exception as exc:
            errors.append(f"client {i}: {exc!r}")

    threads = [threading.Thread(target=run, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    stats = gateway_server.stats()["gateway"]
    assert stats["connections"] >= 16 and stats["refused"] == 0


def test_split_merged_and_garbage_on_one_connection(gateway_server: Server) -> None:
    assert gateway_server.outlet(TcpGatewayOutlet).gateway is not None
    c = Camera2TcpClient(gateway_server.outlet(TcpGatewayOutlet).gateway.port, "KinectDepth")
    c.sock.sendall(b"Connecting2Kin")
    time.sleep(0.1)
    c.sock.sendall(b"ectDepth")
    assert c.sock.recv(64) == b"512,424,1"
    c.sock.sendall(b"DepthDepth")  # two requests in one segment: two frames, in order
    c.recv_exact(2 * 2 * 512 * 424)
    c.sock.sendall(b"what is this")
    assert c.sock.recv(64) == b"Invalid request"
    c.sock.sendall(b"Connecting2KinectDepth\n")  # newline-terminated works too
    assert c.sock.recv(64) == b"512,424,1"
    c.close()


def test_limits_each_get_a_clear_reply_or_close(still_mock: MockDevice) -> None:
    gateway = TcpGatewayOutlet("127.0.0.1:0", max_clients=2, idle_timeout=0.5, send_timeout=1.0)
    srv = Server(address="127.0.0.1", announce=False, outlets=[gateway])
    srv.add_device(still_mock)
    srv.start()
    try:
        assert gateway.gateway is not None
        port = gateway.gateway.port
        a, b = (socket.create_connection(("127.0.0.1", port)) for _ in range(2))
        assert wait_for(lambda: gateway.gateway is not None and gateway.gateway.stats.active == 2)
        extra = socket.create_connection(("127.0.0.1", port))
        assert extra.recv(100).startswith(b"Server busy") and extra.recv(100) == b""
        extra.close()
        time.sleep(1.0)  # idle timeout: both silent connections are closed
        a.settimeout(2)
        assert a.recv(100) == b""
        a.close()
        b.close()
        # a client that asks for color and never reads stalls only itself
        stuck = socket.create_connection(("127.0.0.1", port))
        stuck.sendall(b"RGB" * 50)
        ok = Camera2TcpClient(port, "KinectDepth")
        for _ in range(3):
            assert ok.depth().shape == (424, 512)
        ok.close()
        stuck.close()
        assert gateway.gateway.stats.timeouts >= 2 and gateway.gateway.stats.refused == 1
    finally:
        srv.stop()


def test_framed_mode_from_the_standard_library_example(gateway_server: Server) -> None:
    assert gateway_server.outlet(TcpGatewayOutlet).gateway is not None
    res = subprocess.run(
        [
            sys.executable,
            str(EXAMPLES / "gateway_client.py"),
            "127.0.0.1",
            str(gateway_server.outlet(TcpGatewayOutlet).gateway.port),
            "mock0",
            "depth",
            "3",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0, res.stderr
    assert "devices: mock0 (color, depth, infrared, body)" in res.stdout
    rows = [ln for ln in res.stdout.splitlines() if ln.startswith("depth seq")]
    assert len(rows) == 3 and all("shape [424, 512] <u2" in r and " mm" in r for r in rows)


@pytest.mark.skipif(shutil.which("node") is None, reason="Node.js is not installed")
def test_framed_mode_from_the_node_example(gateway_server: Server) -> None:
    assert gateway_server.outlet(TcpGatewayOutlet).gateway is not None
    res = subprocess.run(
        [
            "node",
            str(EXAMPLES / "gateway_client.js"),
            "127.0.0.1",
            str(gateway_server.outlet(TcpGatewayOutlet).gateway.port),
            "mock0",
            "depth",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0, res.stderr
    assert "devices: mock0" in res.stdout
    assert res.stdout.count("shape [424,512] <u2") == 2


def test_framed_get_encodes_with_the_asked_codec(
    gateway_server: Server, still_mock: MockDevice
) -> None:
    from rgbdcast import codecs

    assert gateway_server.outlet(TcpGatewayOutlet).gateway is not None
    c = Camera2TcpClient(gateway_server.outlet(TcpGatewayOutlet).gateway.port, "")
    for codec in ("grad-zstd", "png", "raw"):
        c.sock.sendall(f"GET mock0 depth {codec}\n".encode())
        (n,) = struct.unpack(">I", c.recv_exact(4))
        header = json.loads(c.recv_exact(n))
        payload = c.recv_exact(header["size"])
        depth = codecs.get(codec).decode(payload, tuple(header["shape"]), header["dtype"])
        assert np.array_equal(depth, _frames(still_mock)[StreamKind.depth])
    for bad in ("GET nope depth\n", "GET mock0 heat\n", "GET mock0 depth zip\n"):
        c.sock.sendall(bad.encode())
        (n,) = struct.unpack(">I", c.recv_exact(4))
        assert "error" in json.loads(c.recv_exact(n))
    c.close()


def test_gateway_is_advertised_and_a_busy_port_is_a_clear_error(gateway_server: Server) -> None:
    from rgbdcast import Client, UsageError

    with Client(next(iter(gateway_server.endpoints.values()))) as client:
        me = client.who()
    assert me["endpoints"]["tcp_gateway"] == gateway_server.outlet(TcpGatewayOutlet).endpoint
    assert gateway_server.outlet(TcpGatewayOutlet).gateway is not None
    taken = TcpGatewayOutlet(f"127.0.0.1:{gateway_server.outlet(TcpGatewayOutlet).gateway.port}")
    other = Server(address="127.0.0.1", announce=False, outlets=[taken])
    with pytest.raises(UsageError, match="TCP gateway"):
        other.start()
    assert not other.is_running


def test_a_video_color_stream_is_served_as_jpeg_and_video_is_refused() -> None:
    pytest.importorskip("av", reason="the [video] extra (PyAV) is not installed")
    import simplejpeg

    mock = MockDevice("mock0", color_size=(320, 180), streams=["color"])
    outlet = TcpGatewayOutlet("127.0.0.1:0")
    srv = Server(address="127.0.0.1", announce=False, codecs={"color": "h264"}, outlets=[outlet])
    srv.add_device(mock)
    srv.start()
    try:
        assert outlet.gateway is not None
        c = Camera2TcpClient(outlet.gateway.port, "")
        c.sock.sendall(b"GET mock0 color jpeg\n")
        (n,) = struct.unpack(">I", c.recv_exact(4))
        header = json.loads(c.recv_exact(n))
        image = simplejpeg.decode_jpeg(c.recv_exact(header["size"]), "BGR")
        assert header["codec"] == "jpeg" and image.shape == (180, 320, 3)
        c.sock.sendall(b"GET mock0 color h264\n")
        (n,) = struct.unpack(">I", c.recv_exact(4))
        assert "not offered here" in json.loads(c.recv_exact(n))["error"]
        c.close()
    finally:
        srv.stop()
