"""CurveZMQ: only clients whose keys are authorised get anything, from any endpoint; the folder
of authorised keys changes while the server runs; the other listeners follow secure mode."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import zmq

from rgbdcast import Client, MockDevice, Server
from rgbdcast.errors import ServerTimeout, UsageError
from rgbdcast.net.security import ClientKeys, ServerKeys, keygen
from rgbdcast.outlets.gateway import TcpGatewayOutlet
from rgbdcast.outlets.web import WebOutlet
from rgbdcast.testing import wait_for

CLI = [sys.executable, "-m", "rgbdcast.cli"]
SERVE = [*CLI, "serve", "--no-announce", "--no-web", "--port", "0", "--color-size", "160x90"]
SERVE += ["--quiet", "--duration", "20"]


@pytest.fixture
def keys(tmp_path: Path) -> Path:
    keygen(tmp_path / "keys", ("client", "stranger"))
    (tmp_path / "keys" / "authorized" / "stranger.key").unlink()  # made, but not authorised
    return tmp_path / "keys"


@pytest.fixture
def secure_server(keys: Path) -> Iterator[Server]:
    srv = Server(
        address="127.0.0.1",
        announce=False,
        name="vault",
        secure=ServerKeys.from_dir(keys),
        outlets=[WebOutlet(0)],
    )
    srv.add_device(MockDevice("mock0", color_size=(160, 90), streams=["depth"]))
    srv.start()
    yield srv
    if srv.is_running:
        srv.stop()


def _control(srv: Server) -> str:
    return next(iter(srv.endpoints.values()))


def test_an_authorised_client_streams_normally(secure_server: Server, keys: Path) -> None:
    with Client(_control(secure_server), curve=ClientKeys.from_dir(keys)) as client:
        frame = client.subscribe("mock0", "depth").get(timeout=10)
        assert frame.array.shape == (424, 512)
        assert client.ping(timeout=3) is not None
    assert secure_server.stats()["security"]["accepted"] >= 2  # control and data


@pytest.mark.parametrize("who", ["no key", "wrong key"])
def test_unauthorised_clients_get_nothing_from_any_endpoint(
    secure_server: Server, keys: Path, who: str
) -> None:
    curve = None if who == "no key" else ClientKeys.from_dir(keys, "stranger")
    client = Client(_control(secure_server), reconnect=False, curve=curve)
    with pytest.raises(ServerTimeout):
        client.connect(timeout=2.0)
    # the data endpoint, found by an authorised client, gives a stranger nothing either
    with Client(_control(secure_server), curve=ClientKeys.from_dir(keys)) as friend:
        data = friend.devices["mock0"].endpoints["depth"]
    ctx = zmq.Context.instance()
    sock = ctx.socket(zmq.SUB)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.SUBSCRIBE, b"")
    if curve is not None:
        sock.curve_serverkey, sock.curve_publickey, sock.curve_secretkey = (
            curve.server_public,
            curve.public,
            curve.secret,
        )
    sock.connect(data)
    try:
        assert sock.poll(1500) == 0  # not one frame
    finally:
        sock.close(0)
    if who == "wrong key":
        assert wait_for(lambda: secure_server.stats()["security"]["rejected"] >= 2, 5.0)


def test_a_refused_client_stops_its_thread_every_time(
    secure_server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    # A keyless REQ socket never completes its handshake; a blocking send of the next
    # heartbeat used to hang the I/O thread for good (about one connect in six here).
    for _ in range(6):
        client = Client(_control(secure_server), reconnect=False, response_timeout=300)
        with pytest.raises(ServerTimeout):
            client.connect(timeout=0.5)
        assert wait_for(
            lambda: not any(t.name == "rgbdcast-client" for t in threading.enumerate()), 2.5
        )
    assert "client not connected" not in caplog.text


def test_the_authorised_folder_can_change_while_serving(secure_server: Server, keys: Path) -> None:
    stranger = ClientKeys.from_dir(keys, "stranger")
    with pytest.raises(ServerTimeout):
        Client(_control(secure_server), reconnect=False, curve=stranger).connect(timeout=1.5)
    shutil.copy(keys / "stranger.key", keys / "authorized" / "stranger.key")
    with Client(_control(secure_server), curve=stranger) as client:
        assert client.subscribe("mock0", "depth").get(timeout=10) is not None
    (keys / "authorized" / "client.key").unlink()  # and revoked
    with pytest.raises(ServerTimeout):
        Client(_control(secure_server), reconnect=False, curve=ClientKeys.from_dir(keys)).connect(
            timeout=1.5
        )


def test_announcement_web_token_and_gateway_follow_secure_mode(
    secure_server: Server, keys: Path
) -> None:
    txt = secure_server._txt()
    assert txt["security"] == "curve"
    assert txt["fingerprint"] == ServerKeys.from_dir(keys).fingerprint
    assert secure_server.outlet(WebOutlet).viewer is not None
    url = secure_server.outlet(WebOutlet).viewer.url
    assert url.startswith("http://127.0.0.1:") and "?token=" in url
    assert b"app.js" in urllib.request.urlopen(url, timeout=5).read()
    bare = url.split("?")[0]
    for target in (bare, bare + "api/devices", bare + "ws"):
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(target, timeout=5)
        assert err.value.code == 403
    devices = json.loads(
        urllib.request.urlopen(url.replace("/?", "/api/devices?"), timeout=5).read()
    )
    assert devices["devices"][0]["id"] == "mock0"
    with pytest.raises(UsageError, match="gateway"):
        Server(
            announce=False,
            secure=ServerKeys.from_dir(keys),
            outlets=[TcpGatewayOutlet("127.0.0.1:0")],
        )
    Server(
        announce=False,
        secure=ServerKeys.from_dir(keys),
        outlets=[TcpGatewayOutlet("127.0.0.1:0", allow_insecure=True)],
    )


def test_keygen_serve_and_connect_from_the_command_line(tmp_path: Path) -> None:
    out = tmp_path / "k"
    res = subprocess.run([*CLI, "keygen", "--out", str(out)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert "fingerprint" in res.stdout and (out / "authorized" / "client.key").exists()
    assert (out / "server.key_secret").stat().st_mode & 0o077 == 0  # secret stays private
    again = subprocess.run([*CLI, "keygen", "--out", str(out)], capture_output=True, text=True)
    assert again.returncode == 2 and "exists" in again.stderr
    serve = subprocess.Popen(
        [*SERVE, "--secure", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert serve.stdout is not None
        first = serve.stdout.readline()
        endpoint = first.split(" at ")[1].strip()
        assert "fingerprint" in serve.stdout.readline()
        ok = subprocess.run(
            [*CLI, "info", endpoint, "--secure", str(out)],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert ok.returncode == 0 and "mock0" in ok.stdout, ok.stderr
        denied = subprocess.run(
            [*CLI, "info", endpoint], capture_output=True, text=True, timeout=30
        )
        assert denied.returncode == 2 and "Traceback" not in denied.stderr
        missing = subprocess.run(
            [*CLI, "info", endpoint, "--secure", str(tmp_path / "nowhere")],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert missing.returncode == 2 and "rgbdcast keygen" in missing.stderr
    finally:
        serve.terminate()
        serve.communicate(timeout=30)


def test_a_secure_server_does_not_leak_into_plain_zenoh(keys: Path) -> None:
    from rgbdcast.outlets.ros2 import Ros2Outlet
    from rgbdcast.outlets.zenoh import ZenohOptions, ZenohOutlet, ZenohSession

    server_keys = ServerKeys.from_dir(keys)
    with pytest.raises(UsageError, match="Zenoh"):
        Server(announce=False, secure=server_keys, outlets=[ZenohOutlet(ZenohOptions())])
    with pytest.raises(UsageError, match="Zenoh"):
        Server(announce=False, secure=server_keys, outlets=[Ros2Outlet(ZenohOptions())])
    allowed = ZenohSession(ZenohOptions(), allow_insecure=True)
    Server(announce=False, secure=server_keys, outlets=[ZenohOutlet(allowed), Ros2Outlet(allowed)])
    tls = ZenohOptions(tls={"root_ca_certificate": "ca.pem"})
    Server(announce=False, secure=server_keys, outlets=[ZenohOutlet(tls)])
