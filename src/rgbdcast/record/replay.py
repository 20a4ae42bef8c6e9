"""A recording served as a device, with its original timing.

How this works: :class:`ReplayDevice` reads one device's frames from an MCAP recording in file
order on its capture thread and hands over each group of frames captured together (same
capture time) when it falls due: the recording's own spacing divided by *speed*. Frames keep
their recorded pixels, sequence numbers and device times, and get the host time of their
replay. With *loop*, the file starts again after its last frame; sequence numbers go on
counting, so clients see no jump backwards.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..codecs.video import is_video
from ..devices.base import StreamInfo, ThreadedDevice, wait_until
from ..errors import UsageError
from ..frames import Frame, Intrinsics, StreamKind
from ..geometry.calibration import Calibration
from .reader import Recording

__all__ = ["ReplayDevice", "replay_devices"]


class ReplayDevice(ThreadedDevice):
    """Replays one device of an MCAP recording (made by ``rgbdcast record``)."""

    kind = "replay"

    def __init__(
        self,
        path: str | Path,
        device_id: str | None = None,
        *,
        loop: bool = False,
        speed: float = 1.0,
        recording: Recording | None = None,
    ) -> None:
        super().__init__()
        if not 0 < speed <= 1000:
            raise UsageError(f"speed must be in (0, 1000], got {speed}")
        self.recording = recording or Recording(path).scan()
        devices = self.recording.devices
        if device_id is None:
            device_id = next(iter(devices))
        if device_id not in devices:
            raise UsageError(
                f"{self.recording.path} has no device {device_id!r} (it has {', '.join(devices)})"
            )
        self.id = device_id
        self.loop = loop
        self.speed = float(speed)
        who = {d.get("id"): d for d in self.recording.server.get("devices", [])}
        recorded_name = who.get(device_id, {}).get("name", device_id)
        self.name = f"{recorded_name} (replay of {self.recording.path.name})"
        self._streams: dict[StreamKind, StreamInfo] = {}
        self._intrinsics: dict[StreamKind, Intrinsics | None] = {}
        for ch in devices[device_id]:
            assert ch.stream is not None
            info = ch.info
            intr = Intrinsics.from_dict(info["intrinsics"]) if "intrinsics" in info else None
            self._intrinsics[ch.stream] = intr
            self._streams[ch.stream] = StreamInfo(
                kind=ch.stream,
                width=int(info.get("width", 0)),
                height=int(info.get("height", 0)),
                fps=float(info.get("fps", 30.0)) * self.speed,
                dtype=str(info.get("dtype", "")),
                units=str(info.get("units", "")),
                intrinsics=intr,
                # a video stream is served as recorded unless the server is told otherwise
                notes={"recorded_codec": ch.codec} if is_video(ch.codec) else {},
            )
        self._calibrations = self.recording.calibrations.get(device_id, [])
        self._cal_index = 0
        self._groups: Iterator[tuple[int, int, list[Frame]]] | None = None
        self._t0 = 0
        self.loops = 0

    @property
    def streams(self) -> dict[StreamKind, StreamInfo]:
        return dict(self._streams)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "file": str(self.recording.path)}

    def calibration(self) -> Calibration | None:
        """The calibration recorded for the frames being replayed (None if none was)."""
        if not self._calibrations:
            return None
        return self._calibrations[self._cal_index][1]

    def calibration_table(self, name: str) -> Any:
        cal = self.calibration()
        return None if cal is None else self.recording.tables.get((self.id, cal.revision, name))

    def _follow_calibration(self, t_log: int) -> None:
        """Move to the calibration recorded last before *t_log* (a loop starts over)."""
        index = 0
        for i, (t, _) in enumerate(self._calibrations):
            if t <= t_log:
                index = i
        if index != self._cal_index:
            self._cal_index = index
            self.on_calibration.send(self)

    def _framesets(self) -> Iterator[tuple[int, int, list[Frame]]]:
        """``(due offset ns, recorded time ns, frames)`` groups, looping if asked.

        A looping replay plays only the framesets between the first and the last that every
        stream has (a recording usually starts and stops in the middle of one), and each pass
        after the first adds the length of that span to every sequence number and frameset id,
        so numbers go on counting, the frames of one frameset keep one number, and each loop
        joins the next without a gap in any stream.
        """
        offset_ns = 0
        shift = 0
        span = self._loop_span() if self.loop else None
        while True:
            first = last = None
            group: list[Frame] = []
            group_t = 0
            for t, frame in self.recording.frames(self.id):
                if span is not None and not span[0] <= frame.seq <= span[1]:
                    continue
                if first is None:
                    first = t
                if group and t != group_t:
                    yield offset_ns + group_t - first, group_t, group
                    group = []
                group_t, last = t, t
                if shift:
                    frame = frame.replace(
                        seq=frame.seq + shift, frameset_id=frame.frameset_id + shift
                    )
                group.append(frame)
            if group and first is not None:
                yield offset_ns + group_t - first, group_t, group
            if span is None or first is None or last is None:
                return
            self.loops += 1
            period = int(1e9 / max(1.0, self._streams[next(iter(self._streams))].fps))
            offset_ns += last - first + period
            shift += span[1] - span[0] + 1

    def _loop_span(self) -> tuple[int, int] | None:
        """The sequence numbers one loop plays, from the scan: the first to the last frameset
        every stream has, or all of them when the streams' spans do not overlap."""
        spans = [
            (ch.first_seq, ch.last_seq)
            for ch in self.recording.devices[self.id]
            if ch.first_seq is not None and ch.last_seq is not None
        ]
        if not spans:
            return None
        start, end = max(a for a, _ in spans), min(b for _, b in spans)
        if start > end:
            return min(a for a, _ in spans), max(b for _, b in spans)
        return start, end

    def _open(self) -> None:
        self._groups = self._framesets()
        self._t0 = time.monotonic_ns()

    def _capture(self, stop: threading.Event) -> list[Frame]:
        assert self._groups is not None
        item = next(self._groups, None)
        if item is None:  # played once: stay open with no more frames
            stop.wait()
            return []
        due, t_log, frames = item
        if not wait_until(self._t0 + int(due / self.speed), stop):
            return []
        self._follow_calibration(t_log)
        now = time.time_ns()
        return [
            f.replace(host_time_ns=now, intrinsics=self._intrinsics.get(f.kind)) for f in frames
        ]


def replay_devices(
    path: str | Path, *, loop: bool = False, speed: float = 1.0
) -> list[ReplayDevice]:
    """One :class:`ReplayDevice` per device in the recording."""
    recording = Recording(path).scan()
    return [
        ReplayDevice(path, dev, loop=loop, speed=speed, recording=recording)
        for dev in recording.devices
    ]
