"""What a server tells clients about itself: the who/me payload, the stats reply and the
Zeroconf TXT record, built from its current devices (pure functions: no sockets, no locks)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import psutil

from ._version import __version__
from .devices.base import Device
from .errors import UsageError
from .frames import StreamKind
from .geometry.calibration import Calibration
from .net.addresses import make_endpoint
from .net.publisher import StreamPublisher
from .net.security import ServerKeys
from .protocol.control import PROTOCOL_VERSION, ErrorCode, RequestRefused

__all__ = [
    "OpenDevice",
    "calibration_answer",
    "checked_calibration",
    "device_record",
    "me_payload",
    "stats_payload",
    "txt_record",
]

OpenDevice = tuple[Device, Mapping[StreamKind, StreamPublisher]]
"""A device clients may see, with the publishers of its open streams."""


def checked_calibration(device: Device) -> tuple[Calibration | None, str | None]:
    """The device's calibration if it is one we can stand behind, else None and why (None and
    None: the device claims none). A refused calibration is never sent."""
    try:
        cal = device.calibration()
    except UsageError as exc:
        return None, str(exc)
    except Exception as exc:  # a device bug must not break who/me
        return None, f"calibration() failed: {exc!r}"
    if cal is None:
        return None, None
    if not isinstance(cal, Calibration):
        return None, f"calibration() returned {type(cal).__name__}, not a Calibration"
    if cal.device_id != device.id:
        return None, f"the calibration is for device {cal.device_id!r}, not {device.id!r}"
    streams = device.streams
    for kind, intr in ((StreamKind.depth, cal.depth), (StreamKind.color, cal.color)):
        info = streams.get(kind)
        if info is None or intr is None or not (info.width and info.height):
            continue
        if (info.width, info.height) != (intr.width, intr.height):
            return None, (
                f"the calibration's {kind.value} camera is {intr.width}x{intr.height} but "
                f"the {kind.value} stream is {info.width}x{info.height}"
            )
    return cal, None


def _find_device(devices: Sequence[OpenDevice], device_id: str) -> OpenDevice:
    found = next((entry for entry in devices if entry[0].id == device_id), None)
    if found is None:
        known = ", ".join(dev.id for dev, _ in devices) or "none"
        raise RequestRefused(
            ErrorCode.unknown_device, f"no device {device_id!r} here (devices: {known})"
        )
    return found


def keyframe_answer(devices: Sequence[OpenDevice], device_id: str, stream: str) -> None:
    """Pass a subscriber's keyframe request to the device's video publisher of *stream*."""
    _, publishers = _find_device(devices, device_id)
    pub = next((p for k, p in publishers.items() if k.value == stream), None)
    if pub is None or not pub.request_keyframe():
        video = ", ".join(k.value for k, p in publishers.items() if p.is_video) or "none"
        raise RequestRefused(
            ErrorCode.bad_request,
            f"{device_id} has no video stream {stream!r} (its video streams: {video})",
        )


def calibration_answer(
    devices: Sequence[OpenDevice], device_id: str, tables: Sequence[str]
) -> tuple[dict[str, Any], list[bytes]]:
    """The calibration reply: the device's calibration (``null`` and the reason if it has none
    we can send) and each requested per-pixel table as one binary part (little-endian)."""
    device, _ = _find_device(devices, device_id)
    cal, error = checked_calibration(device)
    answer: dict[str, Any] = {"device": device_id, "calibration": None, "tables": {}}
    if cal is None:
        answer["error"] = error or f"device {device_id} offers no calibration"
        return answer, []
    answer["calibration"] = cal.to_dict()
    parts: list[bytes] = []
    for name in dict.fromkeys(tables):
        if name not in cal.tables:
            have = ", ".join(cal.tables) or "none"
            raise RequestRefused(
                ErrorCode.bad_request, f"device {device_id} has no table {name!r} (it has: {have})"
            )
        table = device.calibration_table(name)
        if table is None:
            raise RequestRefused(ErrorCode.internal, f"device {device_id} lost its table {name!r}")
        arr = np.ascontiguousarray(table, dtype="<f4")
        answer["tables"][name] = {"shape": list(arr.shape), "dtype": "<f4", "part": len(parts)}
        parts.append(arr.tobytes())
    return answer, parts


def device_record(
    device: Device, publishers: Mapping[StreamKind, StreamPublisher], host: str
) -> dict[str, Any]:
    """One device as who/me lists it: its stream endpoints (on *host*), streams and details,
    and its calibration (or why it was refused)."""
    endpoints = {}
    streams = {}
    for kind, info in device.streams.items():
        pub = publishers.get(kind)
        if pub is None:
            continue
        endpoints[kind.value] = make_endpoint(host, pub.port)
        streams[kind.value] = {**info.to_dict(), "codec": pub.codec_name}
    record = {"id": device.id, "endpoints": endpoints, "streams": streams, **device.describe()}
    cal, error = checked_calibration(device)
    if cal is not None:
        record["calibration"] = cal.to_dict()
    elif error is not None:
        record["calibration_error"] = error
    return record


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
