"""Thousands of malformed messages at a running server (control, data endpoint, plain TCP,
gateway, web viewer), then: it still answers ping, still streams exact frames to a normal
client, and its memory stayed bounded."""

from __future__ import annotations

import json
import os
import random
import socket

import numpy as np
import psutil
import zmq
from websockets.sync.client import connect

from rgbdcast import Client, MockDevice, Server, StreamKind
from rgbdcast.outlets.gateway import TcpGatewayOutlet
from rgbdcast.outlets.web import WebOutlet

N = 2000


def _garbage(rng: random.Random) -> bytes:
    kind = rng.randrange(6)
    if kind == 0:
        return rng.randbytes(rng.randrange(0, 200))
    if kind == 1:
        return b"[" * 5000 + b"]" * 5000  # deep nesting
    if kind == 2:
        return json.dumps({"type": rng.randrange(-5, 300), "payload": "x" * 100}).encode()
    if kind == 3:
        return b"\x00" * rng.randrange(1, 50)
    if kind == 4:
        return json.dumps([1, 2, {"a": [None] * 100}]).encode()
    return "ünïcode ✓ \ud7ff".encode()


def test_a_flood_of_garbage_changes_nothing_for_normal_clients() -> None:
    rng = random.Random(7)
    mock = MockDevice("mock0", color_size=(160, 90), streams=["depth"])
    gateway, web_outlet = TcpGatewayOutlet("127.0.0.1:0"), WebOutlet(0)
    srv = Server(address="127.0.0.1", announce=False, outlets=[gateway, web_outlet])
    srv.add_device(mock)
    srv.start()
    proc = psutil.Process(os.getpid())
    try:
        control = next(iter(srv.endpoints.values()))
        with Client(control) as probe:
            data_ep = probe.devices["mock0"].endpoints["depth"]
        rss_before = proc.memory_info().rss
        ctx = zmq.Context.instance()

        # control: every malformed request gets an error reply
        req = ctx.socket(zmq.REQ)
        req.setsockopt(zmq.LINGER, 0)
        req.connect(control)
        answered = 0
        for i in range(N):
            parts = [_garbage(rng) for _ in range(1 + i % 3)]
            if i % 500 == 0:
                parts = [b"\x01", b"x" * (1 << 20) + b"y"]  # over the 1 MiB limit
            req.send_multipart(parts)
            assert req.poll(5000), f"no reply to malformed request {i}"
            reply = req.recv_multipart()
            answered += 1
            assert reply
        req.close(0)
        assert answered == N

        # the data endpoint: garbage "subscriptions" from an XSUB, and raw bytes from a TCP peer
        xsub = ctx.socket(zmq.XSUB)
        xsub.setsockopt(zmq.LINGER, 0)
        xsub.connect(data_ep)
        for _ in range(N):
            xsub.send(_garbage(rng) or b"\x07")
        xsub.close(0)
        host, port = data_ep.rsplit("/", 1)[1].rsplit(":", 1)
        for _ in range(50):
            with socket.create_connection((host, int(port)), timeout=2) as raw:
                raw.sendall(rng.randbytes(300))

        # the gateway: garbage commands on a few connections
        assert gateway.gateway is not None
        for _ in range(20):
            with socket.create_connection(("127.0.0.1", gateway.gateway.port), timeout=2) as g:
                for _ in range(N // 20):
                    g.sendall(_garbage(rng)[:100] + b"\n")
                g.settimeout(0.2)
                try:
                    while g.recv(65536):
                        pass
                except OSError:
                    pass

        # the web viewer: garbage messages from a browser
        assert web_outlet.viewer is not None
        with connect(f"ws://127.0.0.1:{web_outlet.viewer.port}/ws", max_size=None) as ws:
            for _ in range(N // 4):
                ws.send(_garbage(rng).decode(errors="replace")[:1000])
            web = web_outlet.viewer
            errors = 0
            while errors < N // 4:  # each gets its error reply (read them: replies are bounded)
                msg = ws.recv(timeout=10)
                if isinstance(msg, str) and json.loads(msg)["type"] == "error":
                    errors += 1
        assert web.stats.bad_messages == N // 4

        # still serving everyone else, correctly
        with Client(control) as client:
            assert client.ping(timeout=3) is not None
            sub = client.subscribe("mock0", "depth")
            for _ in range(5):
                frame = sub.get(timeout=5)
                ref = next(f for f in mock.render(frame.seq) if f.kind is StreamKind.depth)
                assert np.array_equal(frame.array, ref.array)
        stats = srv.stats()
        assert sum(stats["control"]["errors"].values()) >= N - 5
        grew = (proc.memory_info().rss - rss_before) / 1e6
        assert grew < 100, f"resident memory grew by {grew:.0f} MB"
    finally:
        srv.stop()
