"""Shared fixtures. Every test stays on loopback: servers bind 127.0.0.1 and Zeroconf is bound
to 127.0.0.1 only (the environment variables below reach subprocesses too)."""

from __future__ import annotations

import gc
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

os.environ["RGBDCAST_BIND"] = "127.0.0.1"
os.environ["RGBDCAST_INTERFACES"] = "127.0.0.1"

from rgbdcast import MockDevice, Server

REPO = Path(__file__).resolve().parent.parent
SHARED_DEPTH = REPO.parent / "shared" / "data" / "depth"


FD_SLACK = 2


@pytest.fixture(scope="session", autouse=True)
def _warm_global_contexts() -> None:
    """Process-wide ZeroMQ state opens descriptors on first use and keeps them: the sync and
    asyncio global contexts, and pyzmq's garbage-collector thread (made by the first zero-copy
    send). Create all three once so the per-test descriptor count starts after them."""
    import zmq
    import zmq.asyncio

    for ctx in (zmq.Context.instance(), zmq.asyncio.Context.instance()):
        sock = ctx.socket(zmq.SUB)
        sock.connect("tcp://127.0.0.1:9")
        sock.close(0)
    ctx = zmq.Context.instance()
    pull, push = ctx.socket(zmq.PULL), ctx.socket(zmq.PUSH)
    pull.bind("inproc://rgbdcast-warmup")
    push.connect("inproc://rgbdcast-warmup")
    push.send(bytearray(1 << 20), copy=False)
    pull.recv()
    push.close(0)
    pull.close(0)
    import importlib.util

    if importlib.util.find_spec("foxglove") is not None:
        _warm_foxglove()
    if importlib.util.find_spec("zenoh") is None:
        return
    # Zenoh's runtime opens its descriptors with the first sessions and keeps them
    from rgbdcast.outlets.zenoh import ZenohLink, ZenohOptions

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        endpoint = f"tcp/127.0.0.1:{probe.getsockname()[1]}"
    with (
        ZenohLink(ZenohOptions(listen=[endpoint])) as a,
        ZenohLink(ZenohOptions(mode="client", connect=[endpoint])) as b,
    ):
        sub = b.session.declare_subscriber("warmup/**", lambda sample: None)
        pub = a.session.declare_publisher("warmup/x")
        time.sleep(0.2)
        pub.put(bytes(1 << 20))
        time.sleep(0.2)
        pub.undeclare()
        sub.undeclare()


def _warm_foxglove() -> None:
    """The Foxglove SDK's runtime opens its descriptors with the first server and keeps them."""
    import foxglove
    from websockets.sync.client import connect

    server = foxglove.start_server(host="127.0.0.1", port=0, context=foxglove.Context())
    with connect(f"ws://127.0.0.1:{server.port}", subprotocols=["foxglove.sdk.v1"]) as ws:  # type: ignore[list-item]
        ws.recv(timeout=5)
    server.stop()


def _ours() -> set[threading.Thread]:
    # rgbdcast-pool-* are process-wide codec workers, kept for the process's life by design
    return {
        t
        for t in threading.enumerate()
        if t.name.startswith("rgbdcast-") and not t.name.startswith("rgbdcast-pool-")
    }


def _fds() -> int:
    return psutil.Process().num_fds() if hasattr(psutil.Process, "num_fds") else 0


@pytest.fixture(autouse=True)
def no_leaks(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail a test that leaves rgbdcast threads running or sockets open (Zeroconf goodbyes get
    5 s). File descriptors are the socket count: every ZeroMQ context and socket holds some.
    Tests marked ``threads_only`` (Zenoh's) are checked for threads alone: eclipse-zenoh 1.x
    itself keeps about one descriptor per closed session that carried data (reproduced with
    zenoh alone: open a listening and a connected session, put a few large samples, close both,
    repeat)."""
    threads_only = request.node.get_closest_marker("threads_only") is not None
    gc.collect()
    before, fds = _ours(), _fds()
    yield
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline:
        leaked = _ours() - before
        if not leaked and (threads_only or _fds() <= fds + FD_SLACK):
            return
        gc.collect()
        time.sleep(0.05)
    if leaked:
        pytest.fail(f"threads still running after the test: {sorted(t.name for t in leaked)}")
    pytest.fail(f"file descriptors grew from {fds} to {_fds()}: a socket was not closed")


@pytest.fixture
def small_mock() -> MockDevice:
    """A mock device at reduced color resolution, so tests stay light on 2 cores."""
    return MockDevice("mock0", color_size=(320, 180), fps=30.0)


@pytest.fixture
def server(small_mock: MockDevice) -> Iterator[Server]:
    srv = Server(address="127.0.0.1", announce=False, name="test server")
    srv.add_device(small_mock)
    srv.start()
    yield srv
    if srv.is_running:
        srv.stop()


@pytest.fixture
def endpoint(server: Server) -> str:
    return next(iter(server.endpoints.values()))


@pytest.fixture
def depth_dir() -> Path:
    """../shared/data/depth: skipped where absent, but CI (CI=true) must have it."""
    if not SHARED_DEPTH.is_dir() or not any(SHARED_DEPTH.glob("*.npy")):
        if os.environ.get("CI"):
            pytest.fail(f"CI must have the shared depth frames at {SHARED_DEPTH}")
        pytest.skip(f"shared depth frames not found at {SHARED_DEPTH} (clone ../shared beside)")
    return SHARED_DEPTH


@pytest.fixture
def output_dir() -> Path:
    path = REPO / "test-output"
    path.mkdir(exist_ok=True)
    return path
