"""Bind and advertise addresses: what to bind, and what a remote client can connect to."""

from __future__ import annotations

import ipaddress
import os
import socket
from urllib.parse import urlsplit

import ifaddr

from ..errors import UsageError

__all__ = [
    "DEFAULT_CONTROL_PORT",
    "DEFAULT_WEB_PORT",
    "advertise_host",
    "default_bind",
    "default_interfaces",
    "local_ipv4",
    "make_endpoint",
    "parse_endpoint",
    "parse_hostport",
    "resolvable",
]

DEFAULT_CONTROL_PORT = 5606
"""``rgbdcast serve`` listens for control requests here unless told otherwise."""
DEFAULT_WEB_PORT = 5680
"""The web viewer's port when ``rgbdcast serve`` is given no ``--web``."""


def default_bind() -> str:
    """The default bind address: ``$RGBDCAST_BIND`` or all interfaces."""
    return os.environ.get("RGBDCAST_BIND", "0.0.0.0")


def default_interfaces() -> list[str] | None:
    """Interfaces to announce on: ``$RGBDCAST_INTERFACES`` (comma-separated) or None (all)."""
    value = os.environ.get("RGBDCAST_INTERFACES", "").strip()
    return [v.strip() for v in value.split(",") if v.strip()] or None


def local_ipv4() -> list[str]:
    """This machine's IPv4 addresses, non-loopback first."""
    found: list[str] = []
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            if isinstance(ip.ip, str) and ip.ip not in found:
                found.append(ip.ip)
    found.sort(key=lambda a: (ipaddress.ip_address(a).is_loopback, a))
    return found or ["127.0.0.1"]


def advertise_host(bind: str) -> str:
    """The host to put in advertised endpoints for a socket bound to *bind* (never 0.0.0.0)."""
    if bind in ("0.0.0.0", "*", ""):
        return local_ipv4()[0]
    return bind


def make_endpoint(host: str, port: int) -> str:
    return f"tcp://{host}:{port}"


def parse_endpoint(endpoint: str, default_port: int = DEFAULT_CONTROL_PORT) -> tuple[str, int]:
    """``tcp://host:port``, ``host:port`` or ``host`` -> ``(host, port)``; UsageError if bad."""
    text = endpoint.strip()
    if "://" not in text:
        text = "tcp://" + text
    try:
        parts = urlsplit(text)
        port = parts.port or default_port
    except ValueError as exc:
        raise UsageError(f"bad endpoint {endpoint!r}: {exc}") from None
    if parts.scheme != "tcp" or not parts.hostname:
        raise UsageError(f"bad endpoint {endpoint!r}: expected tcp://HOST:PORT")
    return parts.hostname, port


def parse_hostport(value: str | int, default_host: str) -> tuple[str, int]:
    """``PORT`` or ``HOST:PORT`` (a gateway's or viewer's address) -> ``(host, port)``, the host
    being *default_host* when none is given; UsageError if malformed."""
    text = str(value)
    host, _, port = text.rpartition(":")
    try:
        number = int(port)
    except ValueError:
        raise UsageError(f"bad address {text!r}: expected [HOST:]PORT") from None
    if not 0 <= number < 65536:
        raise UsageError(f"port must be in 0..65535, got {number}")
    return host or default_host, number


def resolvable(host: str) -> bool:
    """True if *host* is an IP address or a name that resolves."""
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        pass
    try:
        socket.getaddrinfo(host, None, socket.AF_INET)
        return True
    except OSError:
        return False
