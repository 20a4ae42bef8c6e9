"""Zeroconf: announcing a server and browsing for servers.

A server is announced twice: as ``_kinect2._tcp.local.`` exactly as streamkinect2 did (the SRV
port is the control port) and as ``_rgbdcast._tcp.local.`` with TXT properties (protocol
version, device count, streams). The browser listens for ``_kinect2._tcp`` so it also finds
original streamkinect2 servers. Tests bind Zeroconf to 127.0.0.1 only.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Sequence
from typing import Any, NamedTuple

from blinker import Signal
from zeroconf import (
    InterfaceChoice,
    IPVersion,
    ServiceBrowser,
    ServiceInfo,
    ServiceStateChange,
    Zeroconf,
)

from .addresses import default_interfaces, make_endpoint

__all__ = ["KINECT2_TYPE", "RGBDCAST_TYPE", "Announcer", "ServerBrowser", "ServerInfo"]

log = logging.getLogger(__name__)

KINECT2_TYPE = "_kinect2._tcp.local."
RGBDCAST_TYPE = "_rgbdcast._tcp.local."


class ServerInfo(NamedTuple):
    """Kinect2 stream server information: a ``(name, endpoint)`` tuple."""

    name: str
    endpoint: str


def _zeroconf(interfaces: Sequence[str] | None) -> Zeroconf:
    chosen = list(interfaces) if interfaces else default_interfaces()
    return Zeroconf(
        interfaces=chosen if chosen else InterfaceChoice.All, ip_version=IPVersion.V4Only
    )


def _safe_label(name: str) -> str:
    label = "".join(c if c.isprintable() and c != "." else "-" for c in name).strip()
    return (label or "rgbdcast")[:60]


class Announcer:
    """Registers (and keeps up to date) a server's two Zeroconf services, off the caller thread."""

    def __init__(
        self, name: str, host: str, port: int, interfaces: Sequence[str] | None = None
    ) -> None:
        self._name = _safe_label(name)
        self._host = host
        self._port = port
        self._interfaces = interfaces
        self._zc: Zeroconf | None = None
        self._infos: dict[str, ServiceInfo] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._properties: dict[str, str] = {}
        self.error: Exception | None = None
        self._stopping = False

    def _info(self, stype: str, properties: dict[str, str]) -> ServiceInfo:
        hostname = socket.gethostname().split(".")[0] or "rgbdcast"
        return ServiceInfo(
            stype,
            f"{self._name}.{stype}",
            addresses=[socket.inet_aton(self._host)],
            port=self._port,
            properties=properties,
            server=f"{hostname}.local.",
        )

    def start(self, properties: dict[str, str]) -> None:
        self._properties = dict(properties)
        self._thread = threading.Thread(
            target=self._register, name="rgbdcast-announce", daemon=True
        )
        self._thread.start()

    def _register(self) -> None:
        try:
            zc = _zeroconf(self._interfaces)
            with self._lock:
                self._zc = zc
            for stype, props in ((KINECT2_TYPE, {}), (RGBDCAST_TYPE, self._properties)):
                info = self._info(stype, props)
                zc.register_service(info, allow_name_change=True)
                with self._lock:
                    self._infos[stype] = info
            log.info("announced %r on Zeroconf (port %d)", self._name, self._port)
        except Exception as exc:  # Zeroconf failing must not take the server down
            self.error = exc
            if not self._stopping:
                log.warning("Zeroconf announcement failed: %s", exc)

    def update(self, properties: dict[str, str]) -> None:
        """Change the TXT properties of the ``_rgbdcast`` service."""
        self._properties = dict(properties)
        with self._lock:
            zc, old = self._zc, self._infos.get(RGBDCAST_TYPE)
        if zc is None or old is None:
            return
        info = ServiceInfo(
            RGBDCAST_TYPE,
            old.name,
            addresses=old.addresses,
            port=old.port,
            properties=properties,
            server=old.server,
        )
        try:
            zc.update_service(info)
            with self._lock:
                self._infos[RGBDCAST_TYPE] = info
        except Exception as exc:
            log.debug("Zeroconf update failed: %s", exc)

    def stop(self, timeout: float = 0.3) -> None:
        """Withdraw the services (goodbye packets) and close Zeroconf.

        Waits at most *timeout* seconds; the goodbye finishes on a background thread, so a
        server stops within a second even while Zeroconf is still probing its name.
        """
        self._stopping = True

        def close() -> None:
            if self._thread is not None:
                self._thread.join(5.0)
            with self._lock:
                zc, self._zc = self._zc, None
            if zc is not None:
                try:
                    zc.close()  # sends goodbye packets for every registered service
                except Exception as exc:
                    log.debug("closing Zeroconf: %s", exc)

        t = threading.Thread(target=close, name="rgbdcast-unannounce", daemon=True)
        t.start()
        t.join(timeout)


class ServerBrowser:
    """Listens for kinect2 streaming servers; emits ``on_add_server`` / ``on_remove_server``.

    Receivers take one keyword argument, ``server_info`` (a :class:`ServerInfo`). Signals are
    sent on the Zeroconf browser thread. Keep the browser alive (or use it as a context manager)
    for as long as you want notifications; ``close()`` stops it.

    ``address`` is an IP address of the interface to listen on (streamkinect2's argument);
    ``interfaces`` a list of them.
    """

    on_add_server = Signal()
    on_remove_server = Signal()

    def __init__(
        self,
        io_loop: Any = None,
        address: str | None = None,
        *,
        interfaces: Sequence[str] | None = None,
        service_type: str = KINECT2_TYPE,
    ) -> None:
        chosen = list(interfaces) if interfaces else ([address] if address else None)
        self._zc = _zeroconf(chosen)
        self._servers: dict[str, ServerInfo] = {}
        self._lock = threading.Lock()
        self._type = service_type
        self._browser = ServiceBrowser(self._zc, service_type, handlers=[self._on_change])

    @property
    def servers(self) -> list[ServerInfo]:
        """The servers seen so far and not yet gone."""
        with self._lock:
            return list(self._servers.values())

    def _on_change(
        self, zeroconf: Zeroconf, service_type: str, name: str, state_change: ServiceStateChange
    ) -> None:
        if state_change is ServiceStateChange.Removed:
            with self._lock:
                info = self._servers.pop(name, None)
            if info is not None:
                self.on_remove_server.send(self, server_info=info)
            return
        if state_change is not ServiceStateChange.Added:
            return
        zinfo = zeroconf.get_service_info(service_type, name, timeout=3000)
        if zinfo is None or not zinfo.parsed_addresses(IPVersion.V4Only):
            log.debug("could not resolve %s", name)
            return
        host = zinfo.parsed_addresses(IPVersion.V4Only)[0]
        short = name[: -len(service_type) - 1] if name.endswith(service_type) else name
        info = ServerInfo(short, make_endpoint(host, int(zinfo.port or 0)))
        with self._lock:
            self._servers[name] = info
        self.on_add_server.send(self, server_info=info)

    def close(self) -> None:
        try:
            self._browser.cancel()
        finally:
            self._zc.close()

    def __enter__(self) -> ServerBrowser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
