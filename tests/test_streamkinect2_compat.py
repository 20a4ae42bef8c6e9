"""streamkinect2 compatibility: the API names, the original client's wire behaviour, and the
seed's two example programs (adapted only in imports and event-loop lines).

The original streamkinect2 package cannot be installed here (it is on no package registry and
this machine reaches no source host), so its client is exercised as its published code behaves
on the wire: a REQ socket sending ``[type]`` frames (who at connect, who every heartbeat, ping),
replies parsed as ``[type, JSON]`` with ``version == 1``, and a SUB socket subscribed with an
empty topic on the device's ``depth`` endpoint, each message passed on as one frame.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import zmq

import rgbdcast
from rgbdcast import MockKinect, Server
from rgbdcast.testing import wait_for

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def test_the_documented_names_exist() -> None:
    for name in (
        "Server",
        "Client",
        "ServerBrowser",
        "ServerInfo",
        "MockKinect",
        "DepthFrame",
        "EndpointType",
        "ProtocolError",
    ):
        assert hasattr(rgbdcast, name), name
    assert rgbdcast.EndpointType.control.value == 1 and rgbdcast.EndpointType.depth.value == 2
    info = rgbdcast.ServerInfo("name", "tcp://1.2.3.4:5")
    assert isinstance(info, tuple) and info.name == "name" and info.endpoint == "tcp://1.2.3.4:5"
    for attr in (
        "add_kinect",
        "remove_kinect",
        "kinects",
        "is_running",
        "endpoints",
        "start",
        "stop",
        "__enter__",
        "__exit__",
    ):
        assert hasattr(Server(announce=False), attr), attr
    for attr in (
        "server_name",
        "endpoints",
        "is_connected",
        "kinect_ids",
        "connect",
        "disconnect",
        "ping",
        "enable_depth_frames",
        "on_add_kinect",
        "on_remove_kinect",
        "on_depth_frame",
        "on_connect",
        "on_disconnect",
    ):
        assert hasattr(rgbdcast.Client("tcp://127.0.0.1:9"), attr), attr


def test_mock_kinect_signals_depth_frames_as_documented() -> None:
    kinect = MockKinect(color_size=(64, 36))
    got = []

    @MockKinect.on_depth_frame.connect_via(kinect)
    def handler_func(kinect: MockKinect, depth_frame: rgbdcast.DepthFrame) -> None:
        got.append(depth_frame)

    assert isinstance(kinect.unique_kinect_id, str) and kinect.unique_kinect_id
    with kinect:
        assert wait_for(lambda: len(got) >= 3)
    frame = got[-1]
    assert frame.shape == (512, 424)  # (width, height), as streamkinect2 documents
    assert len(bytes(frame.data)) == 512 * 424 * 2


def test_client_signals_and_depth_frames_follow_streamkinect2(endpoint: str) -> None:
    client = rgbdcast.Client(endpoint, connect_immediately=False)
    added, frames, pongs = [], [], []
    rgbdcast.Client.on_add_kinect.connect(
        lambda c, kinect_id: added.append(kinect_id), sender=client, weak=False
    )

    @rgbdcast.Client.on_depth_frame.connect_via(client)
    def on_depth(c: rgbdcast.Client, kinect_id: str, depth_frame: rgbdcast.DepthFrame) -> None:
        frames.append((kinect_id, depth_frame.shape))

    assert client.server_name is None and not client.is_connected
    client.connect()
    try:
        assert client.is_connected and client.server_name == "test server"
        assert added == ["mock0"] and client.kinect_ids == ["mock0"]
        client.ping(lambda: pongs.append(True))
        assert pongs == [True]
        client.enable_depth_frames("mock0")
        assert wait_for(lambda: len(frames) >= 3)
        assert frames[0] == ("mock0", (512, 424))
    finally:
        client.disconnect()
    assert not client.is_connected


def _sk2_request(sock: zmq.Socket, mtype: int) -> tuple[int, dict | None]:  # type: ignore[type-arg]
    sock.send_multipart([bytes([mtype])])
    assert sock.poll(3000)
    msg = sock.recv_multipart()
    assert len(msg) in (1, 2)
    return msg[0][0], (json.loads(msg[1].decode("utf8")) if len(msg) == 2 else None)


def test_the_original_clients_wire_behaviour(endpoint: str) -> None:
    ctx = zmq.Context.instance()
    control = ctx.socket(zmq.REQ)
    control.setsockopt(zmq.LINGER, 0)
    control.connect(endpoint)
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    try:
        mtype, me = _sk2_request(control, 0x03)  # who at connect
        assert mtype == 0x04 and me is not None and me["version"] == 1
        assert isinstance(me["name"], str) and me["endpoints"]["control"] == endpoint
        device = me["devices"][0]
        depth_ep = device["endpoints"]["depth"]
        assert _sk2_request(control, 0x01) == (0x02, None)  # ping -> pong, no payload
        sub.connect(depth_ep)
        sub.setsockopt_string(zmq.SUBSCRIBE, "")
        received = 0
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline:  # frames flow while heartbeats (who) keep going
            if sub.poll(100):
                msg = sub.recv_multipart()
                assert msg  # each message is passed on as one frame
                received += 1
            mtype, me2 = _sk2_request(control, 0x03)
            assert mtype == 0x04 and me2 is not None and me2["devices"][0]["id"] == device["id"]
        assert received >= 30
    finally:
        control.close(0)
        sub.close(0)


def _read_until(proc: subprocess.Popen[str], needle: str, timeout: float = 20) -> list[str]:
    """Lines of *proc*'s output up to the first containing *needle* (or *timeout* s)."""
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        lines.append(line)
        if needle in line or not line:
            break
    return lines


def test_the_seed_examples_run(tmp_path: Path) -> None:
    server = subprocess.Popen(
        [sys.executable, str(EXAMPLES / "mock_server.py")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    client = None
    try:
        lines = _read_until(server, "serving")
        assert any("serving" in ln for ln in lines), lines
        client = subprocess.Popen(
            [sys.executable, str(EXAMPLES / "ping_client.py")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        out = _read_until(client, "Got pong")
        assert any("Got pong" in ln for ln in out), "".join(out)
        assert any("Discovered server" in ln for ln in out)
        rest, _ = client.communicate("\n", timeout=10)
        assert client.returncode == 0, rest
        srest, _ = server.communicate("\n", timeout=10)
        assert server.returncode == 0, srest
        assert "Stopped" in srest
    finally:
        for p in (client, server):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()


def test_depth_frame_compressor_compresses_with_frame_drop() -> None:
    import numpy as np

    from rgbdcast import DepthFrameCompressor, codecs

    kinect = MockKinect(color_size=(64, 36), fps=200)
    got: list[bytes] = []
    with DepthFrameCompressor(kinect) as compressor:

        @DepthFrameCompressor.on_compressed_frame.connect_via(compressor)
        def on_compressed(sender: DepthFrameCompressor, compressed_frame: bytes) -> None:
            got.append(compressed_frame)
            time.sleep(0.02)  # a slow consumer overloads the worker: frames get dropped

        with kinect:
            assert wait_for(lambda: len(got) >= 10, timeout=10)
    assert compressor.dropped > 0 and compressor.compressed == len(got)
    depth = codecs.get(compressor.codec_name).decode(got[-1], (424, 512), "<u2")
    assert depth.dtype == np.uint16 and 500 < np.median(depth) < 6000
    assert len(got[-1]) < 512 * 424 * 2 / 2  # compressed
