"""Zeroconf on the loopback interface only (interfaces=["127.0.0.1"], IPv4)."""

from __future__ import annotations

import socket

from zeroconf import IPVersion, Zeroconf

from rgbdcast import MockDevice, Server, ServerBrowser, ServerInfo
from rgbdcast.net.discovery import RGBDCAST_TYPE
from rgbdcast.testing import wait_for


def test_browser_sees_a_server_come_and_go() -> None:
    seen: list[tuple[str, ServerInfo]] = []
    with ServerBrowser(address="127.0.0.1") as browser:
        ServerBrowser.on_add_server.connect(
            lambda b, server_info: seen.append(("add", server_info)), sender=browser, weak=False
        )
        ServerBrowser.on_remove_server.connect(
            lambda b, server_info: seen.append(("remove", server_info)), sender=browser, weak=False
        )
        srv = Server(address="127.0.0.1", interfaces=["127.0.0.1"], name="disco test")
        srv.add_device(MockDevice("m0", streams=["depth", "body"], depth_size=(64, 48)))
        srv.start()
        try:
            assert wait_for(lambda: any(k == "add" for k, _ in seen), timeout=10)
            _kind, info = next(s for s in seen if s[0] == "add")
            assert info.name == "disco test"
            assert info.endpoint == next(iter(srv.endpoints.values()))
            assert info in browser.servers
            from rgbdcast import Client

            with Client(info.endpoint) as client:  # the discovered endpoint works
                assert client.kinect_ids == ["m0"]
        finally:
            srv.stop()
        assert wait_for(lambda: any(k == "remove" for k, _ in seen), timeout=10)
        assert browser.servers == []


def test_rgbdcast_service_carries_txt_properties() -> None:
    srv = Server(address="127.0.0.1", interfaces=["127.0.0.1"], name="txt test")
    srv.add_device(MockDevice("m0", streams=["depth", "body"], depth_size=(64, 48)))
    srv.start()
    zc = Zeroconf(interfaces=["127.0.0.1"], ip_version=IPVersion.V4Only)
    try:
        info = None
        for _ in range(10):
            info = zc.get_service_info(RGBDCAST_TYPE, f"txt test.{RGBDCAST_TYPE}", timeout=1000)
            if info is not None:
                break
        assert info is not None
        props = {k.decode(): (v or b"").decode() for k, v in info.properties.items()}
        assert props["proto"] == "1" and props["devices"] == "1"
        assert props["streams"] == "m0=depth,body"
        assert info.port == srv.port
        assert socket.inet_ntoa(info.addresses[0]) == "127.0.0.1"
    finally:
        zc.close()
        srv.stop()
