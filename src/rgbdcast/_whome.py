"""What a server tells clients about itself: the who/me payload, the stats reply and the
Zeroconf TXT record, built from its current devices (pure functions: no sockets, no locks)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import psutil

from ._version import __version__
from .devices.base import Device
from .frames import StreamKind
from .net.addresses import make_endpoint
from .net.publisher import StreamPublisher
from .net.security import ServerKeys
from .protocol.control import PROTOCOL_VERSION

__all__ = ["OpenDevice", "device_record", "me_payload", "stats_payload", "txt_record"]

OpenDevice = tuple[Device, Mapping[StreamKind, StreamPublisher]]
"""A device clients may see, with the publishers of its open streams."""


def device_record(
    device: Device, publishers: Mapping[StreamKind, StreamPublisher], host: str
) -> dict[str, Any]:
    """One device as who/me lists it: its stream endpoints (on *host*), streams and details."""
    endpoints = {}
    streams = {}
    for kind, info in device.streams.items():
        pub = publishers.get(kind)
        if pub is None:
            continue
        endpoints[kind.value] = make_endpoint(host, pub.port)
        streams[kind.value] = {**info.to_dict(), "codec": pub.codec_name}
    return {"id": device.id, "endpoints": endpoints, "streams": streams, **device.describe()}


def me_payload(
    name: str, endpoints: Mapping[str, str], devices: Sequence[OpenDevice], host: str
) -> dict[str, Any]:
    """The me message: the server's name and endpoints (control and its outlets') and every
    device clients may subscribe to."""
    return {
        "version": PROTOCOL_VERSION,
        "name": name,
        "endpoints": dict(endpoints),
        "devices": [device_record(dev, pubs, host) for dev, pubs in devices],
        "server": {"software": "rgbdcast", "version": __version__},
    }


def stats_payload(
    devices: Sequence[OpenDevice],
    control: Mapping[str, Any],
    security: Mapping[str, int] | None,
    outlets: Mapping[str, Any],
) -> dict[str, Any]:
    """Counters: per device stream, the control endpoint, this process, security, and each
    running outlet under its name."""
    proc = psutil.Process(os.getpid())
    return {
        "streams": stream_stats(devices),
        "control": dict(control),
        "process": {"rss_bytes": proc.memory_info().rss, "threads": proc.num_threads()},
        "security": dict(security) if security is not None else None,
        **outlets,
    }


def stream_stats(devices: Sequence[OpenDevice]) -> dict[str, dict[str, Any]]:
    """The publisher counters of each open stream, keyed ``<device>/<stream>``."""
    return {
        f"{dev.id}/{kind.value}": pub.stats.to_dict()
        for dev, pubs in devices
        for kind, pub in pubs.items()
    }


def txt_record(name: str, devices: Sequence[Device], secure: ServerKeys | None) -> dict[str, str]:
    """The Zeroconf TXT record: protocol version, name, devices and their streams (each value
    cut to fit a TXT string), and the key fingerprint of a secure server."""
    streams = ";".join(f"{d.id}={','.join(k.value for k in d.streams)}" for d in devices)
    security = {"security": "curve", "fingerprint": secure.fingerprint} if secure else {}
    return {
        **security,
        "proto": str(PROTOCOL_VERSION),
        "name": name[:200],
        "devices": str(len(devices)),
        "streams": streams[:250],
    }
