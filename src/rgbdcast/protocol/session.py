"""Client-side state shared by ``Client`` and ``AsyncClient`` (sans-I/O).

:class:`ServerView` digests who/me replies into device records and tells what was added,
removed or changed; :class:`StreamStats` keeps a subscription's fps, gaps, latency and
bandwidth from the frame headers it sees.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..errors import ProtocolError
from .control import PROTOCOL_VERSION
from .envelope import FrameHeader

__all__ = ["DeviceRecord", "ServerView", "StatsSnapshot", "StreamStats"]


@dataclass(frozen=True, slots=True)
class DeviceRecord:
    """A device as the server described it in its last who/me reply."""

    id: str
    name: str
    endpoints: dict[str, str]
    streams: dict[str, dict[str, Any]]
    info: dict[str, Any] = field(default_factory=dict)


def _str_map(value: Any, what: str) -> dict[str, str]:
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise ProtocolError(f"{what} must be an object of strings")
    return dict(value)


class ServerView:
    """The client's picture of a server, updated from each me payload.

    *fix_endpoint* rewrites an advertised endpoint before use (the client substitutes the control
    host when an advertised host cannot be resolved).
    """

    def __init__(self, fix_endpoint: Callable[[str], str] = lambda e: e) -> None:
        self.name: str | None = None
        self.endpoints: dict[str, str] = {}
        self.devices: dict[str, DeviceRecord] = {}
        self._fix = fix_endpoint

    def apply_me(self, payload: dict[str, Any] | None) -> tuple[list[str], list[str], list[str]]:
        """Digest a me payload; returns ``(added, removed, changed)`` device ids."""
        if payload is None or payload.get("version") != PROTOCOL_VERSION:
            raise ProtocolError("me had wrong or missing version")
        name = payload.get("name")
        devices = payload.get("devices")
        if not isinstance(name, str) or not isinstance(devices, list):
            raise ProtocolError("me lacks name or devices")
        endpoints = {
            k: self._fix(v) for k, v in _str_map(payload.get("endpoints"), "endpoints").items()
        }
        records: dict[str, DeviceRecord] = {}
        for d in devices:
            if not isinstance(d, dict) or not isinstance(d.get("id"), str):
                raise ProtocolError("device records need a string id")
            eps = {
                k: self._fix(v)
                for k, v in _str_map(d.get("endpoints", {}), "device endpoints").items()
            }
            streams = d.get("streams", {})
            if not isinstance(streams, dict):
                streams = {}
            info = {k: v for k, v in d.items() if k not in ("id", "endpoints", "streams")}
            records[d["id"]] = DeviceRecord(
                id=d["id"],
                name=str(d.get("name", d["id"])),
                endpoints=eps,
                streams={k: v for k, v in streams.items() if isinstance(v, dict)},
                info=info,
            )
        old = self.devices
        added = [k for k in records if k not in old]
        removed = [k for k in old if k not in records]
        changed = [k for k in records if k in old and records[k].endpoints != old[k].endpoints]
        self.name, self.endpoints, self.devices = name, endpoints, records
        return added, removed, changed


@dataclass(frozen=True, slots=True)
class StatsSnapshot:
    """A subscription's figures at one moment."""

    frames: int
    fps: float
    dropped: int
    latency_p50_ms: float
    latency_p99_ms: float
    mbit_s: float
    bytes: int
    queue_dropped: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {f: getattr(self, f) for f in self.__slots__}


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return math.nan
    s = sorted(values)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))]


class StreamStats:
    """Counts what one subscription receives. ``window_s`` bounds fps and bandwidth averaging."""

    def __init__(self, window_s: float = 2.0, latency_samples: int = 2000) -> None:
        self.window_ns = int(window_s * 1e9)
        self.frames = 0
        self.dropped = 0
        self.bytes = 0
        self._last_seq: int | None = None
        self._arrivals: deque[tuple[int, int]] = deque()
        self._latency_ms: deque[float] = deque(maxlen=latency_samples)

    def record(self, header: FrameHeader, nbytes: int, now_ns: int) -> None:
        """Note a frame received at *now_ns* (``time.time_ns()``, after decoding)."""
        self.frames += 1
        self.bytes += nbytes
        if self._last_seq is not None:
            gap = header.seq - self._last_seq - 1
            if gap > 0:
                self.dropped += gap
        self._last_seq = header.seq  # a smaller seq means the source restarted: start again
        if header.host_time_ns:
            self._latency_ms.append((now_ns - header.host_time_ns) / 1e6)
        self._arrivals.append((now_ns, nbytes))
        while self._arrivals and now_ns - self._arrivals[0][0] > self.window_ns:
            self._arrivals.popleft()

    def latencies_ms(self) -> list[float]:
        return list(self._latency_ms)

    def snapshot(self, now_ns: int, queue_dropped: int = 0) -> StatsSnapshot:
        arr = [a for a in self._arrivals if now_ns - a[0] <= self.window_ns]
        if len(arr) >= 2:
            span = max(now_ns - arr[0][0], 1)
            fps = (len(arr) - 1) / (span / 1e9)
            mbit = sum(n for _, n in arr[1:]) * 8 / (span / 1e9) / 1e6
        else:
            fps = mbit = 0.0
        lat = list(self._latency_ms)
        return StatsSnapshot(
            frames=self.frames,
            fps=fps,
            dropped=self.dropped,
            latency_p50_ms=_percentile(lat, 0.5),
            latency_p99_ms=_percentile(lat, 0.99),
            mbit_s=mbit,
            bytes=self.bytes,
            queue_dropped=queue_dropped,
        )
