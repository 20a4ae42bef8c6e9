"""Several cameras as one: framesets matched across devices and servers by capture time.

How this works: a :class:`Rig` holds one :class:`~rgbdcast.client.Client` per server and, per
device, a frameset subscription (its chosen streams matched by frameset id) read by a collector
thread of its own. Each device's newest frameset waits in a slot of one (newest wins: a slow
consumer gets fewer, fresher rig framesets, and the replaced ones are counted). Capture times are
read in our clock (each server's clock offset, :mod:`rgbdcast.protocol.clock`), so servers whose
clocks disagree still match. A rig frameset is handed out when every present device has one
whose capture time lies within the tolerance (default half a frame period) of the set's middle
(so at most two tolerances apart); otherwise the oldest waits no more (counted as unmatched) and
a newer one is awaited. A device that has sent nothing for
``absent_s`` leaves the rig until it sends again; each rig frameset says which devices it holds.
With a rig file (where each camera sits, ``docs/rig.md``) the rig also hands out one fused,
colored cloud per rig frameset, in the rig frame.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ._clientbase import until_closed
from .errors import RgbdcastError, UsageError
from .frames import Frame, StreamKind
from .geometry.pointcloud import PointCloud
from .geometry.rigfile import RigFile

__all__ = ["Rig", "RigFrameset", "RigMember", "load_rig_file", "save_rig_file"]

log = logging.getLogger("rgbdcast.rig")


@dataclass(frozen=True)
class RigMember:
    """One device of a rig: the server's control endpoint and the device id."""

    endpoint: str
    device: str

    @property
    def key(self) -> str:
        """``"<control endpoint> <device id>"``, as rig files name devices."""
        return f"{self.endpoint} {self.device}"


@dataclass(frozen=True)
class RigFrameset:
    """One frameset of each present device, captured within the rig's tolerance."""

    frames: dict[RigMember, dict[StreamKind, Frame]]
    times_ns: dict[RigMember, int]
    """Each device's capture time in our clock."""
    missing: tuple[RigMember, ...] = ()
    """Devices of the rig that are absent now (gone, or silent for ``absent_s``)."""

    @property
    def skew_ns(self) -> int:
        """The spread of the capture times (latest minus earliest)."""
        times = list(self.times_ns.values())
        return max(times) - min(times) if times else 0

    @property
    def time_ns(self) -> int:
        """The rig frameset's time: the middle of its earliest and latest capture (our clock);
        every frame lies within the rig's tolerance of it."""
        times = list(self.times_ns.values())
        return (max(times) + min(times)) // 2 if times else 0


@dataclass
class _Slot:
    member: RigMember
    client: Any
    frameset: dict[StreamKind, Frame] | None = None
    time_ns: int = 0
    last_seen: float = 0.0
    replaced: int = 0
    unmatched: int = 0
    sets: Any = None
    thread: threading.Thread | None = None
    error: str = ""
    stats: dict[str, int] = field(default_factory=dict)


class Rig:
    """Matched framesets of several devices (*members*: ``(endpoint, device)`` pairs).

    ::

        with Rig([("tcp://pc1:5606", "kinect2"), ("tcp://pc2:5606", "kinect2")]) as rig:
            for rs in rig:
                print(rs.skew_ns / 1e6, "ms apart", list(rs.frames))
    """

    def __init__(
        self,
        members: Iterable[tuple[str, str] | RigMember],
        streams: Iterable[StreamKind | str] = (StreamKind.depth, StreamKind.color),
        *,
        tolerance_ms: float | None = None,
        absent_s: float = 1.0,
        connect_timeout: float = 5.0,
        rig_file: RigFile | str | Path | None = None,
    ) -> None:
        self.members = [m if isinstance(m, RigMember) else RigMember(*m) for m in members]
        if not self.members:
            raise UsageError("a rig needs at least one device")
        if len(set(self.members)) != len(self.members):
            raise UsageError("a device appears twice in the rig")
        self.streams = list(dict.fromkeys(StreamKind(s) for s in streams))
        self.tolerance_ms = tolerance_ms
        self.absent_s = absent_s
        self.connect_timeout = connect_timeout
        if isinstance(rig_file, (str, Path)):
            rig_file = load_rig_file(rig_file)
        self.rig_file = rig_file
        """Where each camera sits in the rig frame (``calibrate`` writes it): with it the rig
        hands out fused clouds (:meth:`point_cloud`)."""
        if rig_file is not None:
            for m in self.members:
                rig_file.camera(m.endpoint, m.device)  # every member must be in it
        self.matched = 0
        """Rig framesets handed out."""
        self._clients: dict[str, Any] = {}
        self._slots: dict[RigMember, _Slot] = {}
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._tolerance_ns = 0

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self) -> None:
        from .client import Client

        try:
            fps = []
            for m in self.members:
                client = self._clients.get(m.endpoint)
                if client is None:
                    client = Client(m.endpoint, reconnect=True)
                    client.connect(timeout=self.connect_timeout)
                    client.clock_offset(timeout=self.connect_timeout)
                    self._clients[m.endpoint] = client
                fps.append(self._member_fps(client, m))
                self._slots[m] = _Slot(m, client)
            self._set_tolerance(fps)
            for slot in self._slots.values():
                slot.last_seen = time.monotonic()  # expected from the start, for absent_s
                # lazy: the framesets newest-wins replaces are never decoded
                slot.sets = slot.client.subscribe_frameset(
                    slot.member.device, self.streams, lazy=True
                )
                slot.thread = threading.Thread(
                    target=self._collect,
                    args=(slot,),
                    name=f"rgbdcast-rig-{slot.member.device}",
                    daemon=True,
                )
                slot.thread.start()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        for slot in self._slots.values():
            if slot.sets is not None:
                slot.sets.close()
            if slot.thread is not None:
                slot.thread.join(2.0)
        for client in self._clients.values():
            client.disconnect()
        self._clients.clear()

    def __enter__(self) -> Rig:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def client_of(self, member: RigMember) -> Any:
        """The :class:`~rgbdcast.client.Client` connected to *member*'s server (while started):
        for its calibration, clock and point clouds."""
        return self._slots[member].client

    @property
    def tolerance_ns(self) -> int:
        return self._tolerance_ns

    def _member_fps(self, client: Any, m: RigMember) -> float:
        """The member's frame rate (its streams' slowest), or why it cannot be in the rig."""
        record = client.devices.get(m.device)
        if record is None:
            known = ", ".join(client.devices) or "none"
            raise UsageError(f"{m.endpoint} has no device {m.device!r} (it has {known})")
        missing = [s.value for s in self.streams if s.value not in record.streams]
        if missing:
            raise UsageError(f"{m.key} has no {', '.join(missing)} stream")
        return min(float(record.streams[s.value].get("fps") or 30) for s in self.streams)

    def _set_tolerance(self, fps: list[float]) -> None:
        period_ms = 1000.0 / max(1.0, min(fps))
        self._tolerance_ns = int((self.tolerance_ms or period_ms / 2) * 1e6)

    def _offer(self, slot: _Slot, frames: dict[StreamKind, Frame]) -> None:
        """Under the lock: a device's newest frameset, its capture time in our clock."""
        first = next(iter(frames.values()))
        local = slot.client.local_time_ns(first.host_time_ns)
        if slot.frameset is not None:
            slot.replaced += 1  # newest wins: the consumer was slower than the cameras
        slot.frameset = frames
        slot.time_ns = local if local is not None else first.host_time_ns
        slot.last_seen = time.monotonic()

    def _place(self, member: RigMember, cloud: PointCloud, box: Any) -> tuple[Any, Any]:
        """A camera's cloud in the rig frame, cropped to *box*."""
        assert self.rig_file is not None
        place = self.rig_file.camera(member.endpoint, member.device).rig_from_depth
        pts = place.apply(cloud.points)
        if box is None:
            return pts, cloud.colors
        lo, hi = np.asarray(box[0], np.float32), np.asarray(box[1], np.float32)
        keep = np.all((pts >= lo) & (pts <= hi), axis=1)
        return pts[keep], cloud.colors[keep]

    def _fused(self, parts: list[tuple[Any, Any]]) -> PointCloud:
        assert self.rig_file is not None
        if not parts:
            return PointCloud(np.zeros((0, 3), np.float32), np.zeros((0, 3), np.uint8), "rig")
        return PointCloud(
            np.concatenate([p for p, _ in parts]).astype(np.float32, copy=False),
            np.concatenate([c for _, c in parts]),
            self.rig_file.frame,
        )

    # -- collectors (one thread per device) -----------------------------------------------------
    def _collect(self, slot: _Slot) -> None:
        while not self._stop.is_set():
            try:
                frames = slot.sets.get(timeout=0.2)
            except TimeoutError:
                continue
            except RgbdcastError as exc:  # the subscription closed: the rig is stopping
                slot.error = str(exc)
                return
            with self._cond:
                self._offer(slot, frames)
                self._cond.notify_all()

    # -- matching -------------------------------------------------------------------------------
    def _present(self, now: float) -> list[_Slot]:
        return [s for s in self._slots.values() if now - s.last_seen < self.absent_s]

    def _try_match(self) -> RigFrameset | None:
        """Under the lock: a rig frameset if every present device has one within tolerance."""
        now = time.monotonic()
        present = self._present(now)
        if not present or any(s.frameset is None for s in present):
            return None
        times = {s.member: s.time_ns for s in present}
        # every frame within the tolerance of the set's middle: cameras that are not
        # synchronised keep their phases, and three of them can never all be within half a
        # period of each other, but always of their middle
        if max(times.values()) - min(times.values()) > 2 * self._tolerance_ns:
            oldest = min(present, key=lambda s: s.time_ns)  # its partners are newer: it waits
            oldest.frameset = None  # no more, and a newer one of its own is awaited
            oldest.unmatched += 1
            return None
        out = RigFrameset(
            frames={s.member: s.frameset for s in present if s.frameset is not None},
            times_ns=times,
            missing=tuple(m for m in self.members if m not in {s.member for s in present}),
        )
        for s in present:
            s.frameset = None
        self.matched += 1
        return out

    def get(self, timeout: float | None = None) -> RigFrameset:
        """The next rig frameset; ``TimeoutError`` after *timeout* s."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not self._stop.is_set():
                got = self._try_match()
                if got is not None:
                    return got
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise TimeoutError(f"no rig frameset within {timeout} s")
                self._cond.wait(min(left, 0.1) if left is not None else 0.1)
        raise UsageError("the rig is stopped")

    def __iter__(self) -> Iterator[RigFrameset]:
        return until_closed(self.get, self._stop.is_set)

    def point_cloud(
        self,
        rs: RigFrameset,
        *,
        decimate: int = 1,
        box: tuple[tuple[float, float, float], tuple[float, float, float]] | None = None,
        timeout: float | None = None,
    ) -> PointCloud:
        """One colored cloud of a rig frameset in the rig frame: each camera's registered,
        occlusion-tested cloud, placed by the rig file; *box* (metres, rig frame) crops."""
        if self.rig_file is None:
            raise UsageError("a fused cloud needs the rig file (Rig(..., rig_file=...))")
        parts = []
        for member, frames in rs.frames.items():
            cloud = self.client_of(member).point_cloud(frames, decimate=decimate, timeout=timeout)
            parts.append(self._place(member, cloud, box))
        return self._fused(parts)

    def stats(self) -> dict[str, dict[str, Any]]:
        """Per device: framesets replaced before use, left unmatched, the clock offset, and
        what its streams bring in (bytes so far, Mbit/s now)."""
        with self._cond:
            out = {}
            for m, s in self._slots.items():
                est = s.client.clock
                snaps = s.sets.snapshots().values() if s.sets is not None else ()
                out[m.key] = {
                    "replaced": s.replaced,
                    "unmatched": s.unmatched,
                    "clock": est.describe() if est is not None else "clock offset: unknown",
                    "bytes": sum(x.bytes for x in snaps),
                    "mbit_s": sum(x.mbit_s for x in snaps),
                }
            return out


def load_rig_file(path: str | Path) -> RigFile:
    """Read a rig file (docs/rig.md); :class:`UsageError` with one line if it is not one."""
    import json

    p = Path(path)
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsageError(f"rig file {p}: {exc.strerror}") from None
    except ValueError as exc:
        raise UsageError(f"rig file {p}: not JSON ({exc})") from None
    try:
        return RigFile.from_dict(doc)
    except UsageError as exc:
        raise UsageError(f"{p}: {exc}") from None


def save_rig_file(rig: RigFile, path: str | Path) -> None:
    import json

    Path(path).write_text(json.dumps(rig.to_dict(), indent=1) + "\n", encoding="utf-8")
