"""The web viewer without a browser: its messages (pure), its HTTP and WebSocket endpoints over
real sockets, the ack flow control, render-once sharing and ``rgbdcast view``."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zlib
from collections import Counter
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import simplejpeg
from websockets.sync.client import ClientConnection, connect

from rgbdcast import MockDevice, Server, StreamKind, codecs
from rgbdcast.errors import ProtocolError
from rgbdcast.frames import Body, Frame, Joint, JointType
from rgbdcast.outlets.web import WebOutlet
from rgbdcast.protocol.viewer import (
    frame_message,
    parse_client_message,
    parse_frame_message,
)
from rgbdcast.testing import UnpluggableMock, wait_for

# -- messages (pure) ---------------------------------------------------------------------------


def _frame(kind: StreamKind, data: Any, seq: int = 7) -> Frame:
    return Frame(device_id="cam", kind=kind, seq=seq, data=data, host_time_ns=1_500_000_000)


def test_depth_message_carries_the_exact_pixels() -> None:
    from rgbdcast.codecs.grad import native_available

    depth = np.random.default_rng(1).integers(0, 8000, (424, 512), dtype=np.uint16)
    depth[100:200] = 0  # runs of missing readings
    header, payload = parse_frame_message(frame_message(_frame(StreamKind.depth, depth)))
    assert (header["width"], header["height"]) == (512, 424)
    assert header["device"] == "cam" and header["seq"] == 7 and header["t_host_ms"] == 1500.0
    if native_available():
        assert header["fmt"] == "rvl"
        pixels = codecs.get("rvl").decode(bytes(payload), (424, 512), "<u2")
    else:
        assert header["fmt"] == "u16z"
        pixels = np.frombuffer(zlib.decompress(payload), "<u2").reshape(424, 512)
    assert np.array_equal(pixels, depth)


def test_color_message_is_one_jpeg_a_browser_can_decode() -> None:
    color = np.zeros((90, 160, 4), np.uint8)
    color[..., 2] = 200  # red in BGRA
    header, payload = parse_frame_message(frame_message(_frame(StreamKind.color, color)))
    assert header["fmt"] == "jpeg" and bytes(payload[:2]) == b"\xff\xd8"
    rgb = simplejpeg.decode_jpeg(bytes(payload), colorspace="RGB")
    assert rgb.shape == (90, 160, 3) and rgb[..., 0].mean() > 180


def test_a_jpeg_given_is_passed_through_unchanged() -> None:
    color = np.zeros((16, 16, 3), np.uint8)
    jpeg = simplejpeg.encode_jpeg(color, colorspace="BGR")
    _, payload = parse_frame_message(frame_message(_frame(StreamKind.color, color), jpeg=jpeg))
    assert bytes(payload) == jpeg


def test_body_message_has_both_projections_and_null_for_unknown() -> None:
    joints = tuple(
        Joint(
            type=j,
            position=(0.1, 0.2, 2.0),
            color_xy=(100.0 + j, 50.0),
            depth_xy=(float("nan"), float("nan")) if j == 3 else (10.0, 20.0),
        )
        for j in JointType
    )
    body = Body(tracking_id=2**63 + 5, joints=joints)
    header, payload = parse_frame_message(frame_message(_frame(StreamKind.body, (body,))))
    bodies = json.loads(bytes(payload))
    assert header["fmt"] == "bodies" and len(bodies) == 1
    assert bodies[0]["id"] == str(2**63 + 5)  # exact, as a string
    assert bodies[0]["joints"][0] == [100.0, 50.0, 10.0, 20.0, 2]
    assert bodies[0]["joints"][3][2:4] == [None, None]


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("not json", "not JSON"),
        ("[1, 2]", "JSON object"),
        ('{"type": "launch"}', "unknown message type"),
        ('{"type": "ack"}', "key"),
        ('{"type": "select", "source": 3}', "source"),
        ("{" * 5000, "exceeds"),
        ("[" * 3000 + "]" * 3000, "exceeds"),
    ],
)
def test_bad_browser_messages_are_refused_with_a_reason(raw: str, reason: str) -> None:
    with pytest.raises(ProtocolError, match=reason):
        parse_client_message(raw)


def test_truncated_frame_messages_are_refused() -> None:
    msg = frame_message(_frame(StreamKind.depth, np.zeros((4, 4), np.uint16)))
    for bad in (msg[:3], msg[:10], b"\x00\x00\x00\x02[]"):
        with pytest.raises(ProtocolError):
            parse_frame_message(bad)


# -- a running server --------------------------------------------------------------------------


@pytest.fixture
def web_server() -> Iterator[Server]:
    srv = Server(address="127.0.0.1", announce=False, name="web test", outlets=[WebOutlet(0)])
    srv.add_device(UnpluggableMock("mock0", color_size=(320, 180), fps=30.0))
    srv.start()
    yield srv
    if srv.is_running:
        srv.stop()


def _ws(srv: Server) -> ClientConnection:
    assert srv.outlet(WebOutlet).viewer is not None
    return connect(
        f"ws://127.0.0.1:{srv.outlet(WebOutlet).viewer.port}/ws", max_size=None, open_timeout=5
    )


def _frames(
    ws: ClientConnection,
    seconds: float,
    ack: bool = True,
    seen: set[Any] | None = None,
    clouds: list[Any] | None = None,
) -> Counter[str]:
    """Receive for *seconds*; count frames per stream; ack each (or not); add (stream, seq) to
    *seen*, and the 3-D view's messages (header, payload) to *clouds*."""
    got: Counter[str] = Counter()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            msg = ws.recv(timeout=max(0.01, deadline - time.monotonic()))
        except TimeoutError:
            break
        if isinstance(msg, str):
            continue
        header, _ = parse_frame_message(msg)
        key = f"{header['device']}/{header['stream']}"
        got[key] += 1
        if seen is not None:
            seen.add((key, header["seq"]))
        if clouds is not None and header.get("fmt") == "cloud":
            clouds.append((header, bytes(_)))
        if ack:
            ws.send(json.dumps({"type": "ack", "key": key}))
    return got


def test_page_and_assets_are_served_from_the_package(web_server: Server) -> None:
    assert web_server.outlet(WebOutlet).viewer is not None
    base = web_server.outlet(WebOutlet).viewer.url
    assert base.startswith("http://127.0.0.1:")
    page = urllib.request.urlopen(base, timeout=5).read().decode()
    script = urllib.request.urlopen(base + "app.js", timeout=5).read().decode()
    assert "DecompressionStream" in script
    assert 'src="app.js"' in page and "http" not in page.split("<body>")[1]  # no CDN
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(base + "../etc/passwd", timeout=5)
    assert err.value.code == 404
    devices = json.loads(urllib.request.urlopen(base + "api/devices", timeout=5).read())
    assert devices["devices"][0]["id"] == "mock0"
    # the four streams, and the 3-D view's cloud: the mock has a calibration
    assert set(devices["devices"][0]["streams"]) == {"color", "depth", "infrared", "body", "points"}


def test_every_stream_arrives_and_the_server_advertises_the_viewer(web_server: Server) -> None:
    with _ws(web_server) as ws:
        hello = json.loads(ws.recv(timeout=5))
        assert hello["type"] == "hello" and hello["server"] == "web test"
        assert len(hello["joints"]) == 25 and [3, 2] in hello["bones"]
        got = _frames(ws, 2.0)
    assert set(got) == {f"mock0/{k}" for k in ("color", "depth", "infrared", "body", "points")}
    assert min(got.values()) >= 10  # acked promptly, each stream keeps flowing
    me = web_server._me_payload()
    assert (
        web_server.outlet(WebOutlet).viewer is not None
        and me["endpoints"]["web"] == web_server.outlet(WebOutlet).viewer.url
    )


def test_a_page_that_does_not_ack_gets_one_frame_per_stream(web_server: Server) -> None:
    with _ws(web_server) as ws:
        got = _frames(ws, 1.5, ack=False)
        assert set(got.values()) == {1}  # one in flight per stream, however long we wait
        ws.send(json.dumps({"type": "ack", "key": "mock0/depth"}))
        more = _frames(ws, 0.5, ack=False)
    assert more == Counter({"mock0/depth": 1})  # the newest depth frame, nothing else


def test_many_viewers_share_one_rendering_per_frame(web_server: Server) -> None:
    assert web_server.outlet(WebOutlet).viewer is not None
    web = web_server.outlet(WebOutlet).viewer
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(_ws(web_server)) for _ in range(4)]
        total: Counter[str] = Counter()
        distinct: set[Any] = set()
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            for ws in socks:
                total += _frames(ws, 0.05, seen=distinct)
        sent = sum(total.values())
        assert sent > 100 and sent > 1.5 * len(distinct)  # viewers got the same frames...
        assert web.stats.renders <= len(distinct) + 8  # ...each rendered once (+ in flight)
    wait_for(lambda: not web.watching, 5.0)
    before = web.stats.renders
    skipped = web_server.stats()["streams"]["mock0/color"]["skipped_idle"]
    time.sleep(0.5)
    assert web.stats.renders == before  # nobody watches: nothing rendered
    assert web_server.stats()["streams"]["mock0/color"]["skipped_idle"] > skipped  # nor encoded


def test_bad_messages_are_answered_and_the_viewer_goes_on(web_server: Server) -> None:
    assert web_server.outlet(WebOutlet).viewer is not None
    with _ws(web_server) as ws:
        for bad in ("hello?", '{"type": "rm -rf"}', '{"type": "ack", "key": 5}'):
            ws.send(bad)
        errors = []
        deadline = time.monotonic() + 3.0
        while len(errors) < 3 and time.monotonic() < deadline:
            msg = ws.recv(timeout=3)
            if isinstance(msg, str) and json.loads(msg)["type"] == "error":
                errors.append(json.loads(msg)["reason"])
        assert len(errors) == 3 and "unknown message type" in errors[1]
        assert web_server.outlet(WebOutlet).viewer.stats.bad_messages == 3
        assert sum(_frames(ws, 0.5).values()) > 0
        ws.send("x" * 10_000)  # over the size limit: the connection is closed, nobody else
        with pytest.raises(Exception):  # noqa: B017 (websockets' ConnectionClosed family)
            _frames(ws, 1.0)
    with _ws(web_server) as ws2:
        assert sum(_frames(ws2, 0.5).values()) > 0


def test_an_unplugged_device_shows_as_unplugged(web_server: Server) -> None:
    dev = web_server.devices[0]
    assert isinstance(dev, UnpluggableMock)
    with _ws(web_server) as ws:
        dev.unplug()
        state = None
        deadline = time.monotonic() + 5
        while state != "unplugged" and time.monotonic() < deadline:
            msg = ws.recv(timeout=5)
            if isinstance(msg, str) and json.loads(msg)["type"] == "devices":
                state = json.loads(msg)["devices"][0]["state"]
        assert state == "unplugged"


SERVE = [sys.executable, "-m", "rgbdcast.cli", "serve", "--no-announce", "--port", "0"]
SERVE += ["--duration", "1", "--color-size", "320x180", "--quiet"]


def test_serve_prints_the_viewer_address_and_falls_back_from_a_busy_port() -> None:
    import socket

    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    port = busy.getsockname()[1]
    try:
        out = subprocess.run(
            [*SERVE, "--web", str(port)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.returncode == 2 and "web viewer" in out.stderr and "--no-web" in out.stderr
        assert "Traceback" not in out.stderr
    finally:
        busy.close()
    out = subprocess.run(
        SERVE,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert "web viewer at http://127.0.0.1:" in out.stdout


def test_view_command_shows_a_remote_servers_streams(web_server: Server) -> None:
    from rgbdcast.outlets.webviewer import WebViewer
    from rgbdcast.remoteview import RemoteBackend

    control = next(iter(web_server.endpoints.values()))
    backend = RemoteBackend([control], discover=False, interfaces=None)
    viewer = WebViewer("127.0.0.1", 0, backend)
    viewer.start()
    backend.start(viewer)
    try:
        wait_for(lambda: any(d["state"] == "live" for d in backend.devices()), 10.0)
        clouds: list[Any] = []
        with connect(f"ws://127.0.0.1:{viewer.port}/ws", max_size=None) as ws:
            got = _frames(ws, 2.0, clouds=clouds)
        device = f"{control}|mock0"
        head, payload = clouds[-1]
        assert head["device"] == device and 30_000 < head["n"] < 60_000
        xyz = np.frombuffer(payload[: head["n"] * 6], "<i2").reshape(-1, 3)
        assert 1000 < np.median(xyz[:, 2]) < 5000  # millimetres, in front of the camera
        assert len(head["bodies"]) == 1 and len(head["bodies"][0]) == 25
        # the four streams, and the 3-D view made here from the calibration the server sends
        kinds = ("color", "depth", "infrared", "body", "points")
        assert {k for k in got} == {f"{device}/{k}" for k in kinds}
        assert backend.sources()[0]["state"] == "connected"
        web_server.stop()  # the server goes away: its device shows as gone
        wait_for(lambda: backend.devices()[0]["state"] == "gone", 10.0)
    finally:
        backend.stop()
        viewer.stop()


def test_view_lists_discovered_servers_and_watches_the_one_picked() -> None:
    from rgbdcast.outlets.webviewer import WebViewer
    from rgbdcast.remoteview import RemoteBackend

    srv = Server(address="127.0.0.1", name="found on zeroconf", interfaces=["127.0.0.1"])
    srv.add_device(MockDevice("cam", color_size=(320, 180), streams=["depth"]))
    srv.start()
    backend = RemoteBackend([], discover=True, interfaces=["127.0.0.1"])
    viewer = WebViewer("127.0.0.1", 0, backend)
    viewer.start()
    backend.start(viewer)
    try:
        control = next(iter(srv.endpoints.values()))
        assert wait_for(lambda: any(s["id"] == control for s in backend.sources()), 15.0)
        source = next(s for s in backend.sources() if s["id"] == control)
        assert source["name"] == "found on zeroconf" and not source["selected"]
        assert backend.devices() == []  # listed, not watched until picked
        with connect(f"ws://127.0.0.1:{viewer.port}/ws", max_size=None) as ws:
            ws.send(json.dumps({"type": "select", "source": control, "on": True}))
            assert wait_for(lambda: any(d["state"] == "live" for d in backend.devices()), 10.0)
            got = _frames(ws, 1.5)
        assert got[f"{control}|cam/depth"] > 0
    finally:
        backend.stop()
        viewer.stop()
        srv.stop()


def test_view_command_line_serves_the_page_and_stops_by_itself(web_server: Server) -> None:
    control = next(iter(web_server.endpoints.values()))
    out = subprocess.run(
        [*SERVE[:3], "view", control, "--web", "127.0.0.1:0", "--duration", "1.5"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert "web viewer at http://127.0.0.1:" in out.stdout and ":0/" not in out.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "rgbdcast.cli", "view", "--web", "nonsense"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2 and "expected [HOST:]PORT" in bad.stderr


def test_view_shows_a_video_stream_decoded_in_order_as_jpeg() -> None:
    """``rgbdcast view`` of a server sending H.264 color: the client decodes every unit as it
    comes, and browsers get JPEG of those pictures (and the 3-D view their colors)."""
    pytest.importorskip("av", reason="the [video] extra (PyAV) is not installed")
    from rgbdcast.outlets.webviewer import WebViewer
    from rgbdcast.remoteview import RemoteBackend

    mock = MockDevice("mock0", color_size=(320, 180), fps=30.0)
    srv = Server(address="127.0.0.1", announce=False, codecs={"color": "h264"})
    srv.add_device(mock)
    srv.start()
    control = next(iter(srv.endpoints.values()))
    backend = RemoteBackend([control], discover=False, interfaces=None)
    viewer = WebViewer("127.0.0.1", 0, backend)
    viewer.start()
    backend.start(viewer)
    try:
        wait_for(lambda: any(d["state"] == "live" for d in backend.devices()), 10.0)
        colors = []
        got: Counter[str] = Counter()
        with connect(f"ws://127.0.0.1:{viewer.port}/ws", max_size=None) as ws:
            deadline = time.monotonic() + 2.5
            while time.monotonic() < deadline:
                try:
                    msg = ws.recv(timeout=0.5)
                except TimeoutError:
                    continue
                if isinstance(msg, str):
                    continue
                header, payload = parse_frame_message(msg)
                key = f"{header['device']}/{header['stream']}"
                got[key] += 1
                if header["stream"] == "color":
                    colors.append((header["seq"], bytes(payload)))
                ws.send(json.dumps({"type": "ack", "key": key}))
        device = f"{control}|mock0"
        assert got[f"{device}/color"] >= 10 and got[f"{device}/points"] >= 1
        for seq, jpeg in colors[:5]:
            image = simplejpeg.decode_jpeg(jpeg, "BGR").astype(np.float32)
            truth = next(f for f in mock.render(seq) if f.kind is StreamKind.color).array
            err = np.mean((image - truth.astype(np.float32)) ** 2)
            assert 10 * np.log10(255**2 / err) > 28
    finally:
        backend.stop()
        viewer.stop()
        srv.stop()
