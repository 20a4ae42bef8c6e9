"""Writing frames, as received, into an MCAP file.

How this works: :class:`McapRecorder` turns each received frame into its channel's message
(:mod:`.mcapfile`), registering schemas and channels on first use, and appends it. MCAP groups
messages into compressed chunks; the file is flushed after each append, so the operating
system holds every finished chunk: a recorder killed without warning leaves a file readable up
to its last complete chunk (``Recording`` reads such files). ``close()`` writes the summary.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from mcap.writer import CompressionType, Writer

from .._version import __version__
from ..codecs.video import is_keyframe
from ..errors import RecordingError
from ..frames import StreamKind
from ..geometry.calibration import Calibration
from ..geometry.rigfile import RigFile
from ..protocol.envelope import EncodedFrame
from .mcapfile import (
    METADATA_NAME,
    PROFILE,
    TABLE_ATTACHMENT,
    ChannelSpec,
    bodies_scene_message,
    calibration_message,
    frame_message,
    full_calibration_messages,
    points_message,
    rig_messages,
)

__all__ = ["McapRecorder"]

DEFAULT_CHUNK_BYTES = 1 << 20


class McapRecorder:
    """Append frames (``EncodedFrame``, as a ``decode=False`` subscription yields them) to an
    MCAP file. *info* describes the server (its who/me payload) and is stored as metadata;
    *streams* maps ``(device, stream)`` to that stream's description (size, fps, units)."""

    def __init__(
        self,
        path: str | Path,
        *,
        info: dict[str, Any] | None = None,
        streams: dict[tuple[str, StreamKind], dict[str, Any]] | None = None,
        chunk_bytes: int = DEFAULT_CHUNK_BYTES,
        compression: str = "zstd",
    ) -> None:
        self.path = Path(path)
        try:
            self._file = open(self.path, "wb")  # noqa: SIM115 (closed by close())
        except OSError as exc:
            raise RecordingError(f"cannot write {self.path}: {exc.strerror}") from exc
        kind = {"zstd": CompressionType.ZSTD, "lz4": CompressionType.LZ4, "none": None}
        if compression not in kind:
            raise RecordingError(f"compression must be one of {', '.join(kind)}")
        self._writer = Writer(
            self._file,
            chunk_size=chunk_bytes,
            compression=kind[compression] or CompressionType.NONE,
        )
        self._streams = dict(streams or {})
        self._schemas: dict[str, int] = {}
        self._channels: dict[str, int] = {}
        self._calibration: dict[str, Any] = {}
        self._revisions: dict[str, str] = {}
        self._full: set[str] = set()
        self.frames: Counter[str] = Counter()
        """Frames written per ``device/stream``."""
        self._video_au: dict[str, int] = {}
        self.video_units_skipped = 0
        """Video units not written: they came after a lost unit, before the next keyframe."""
        self.first_ns = self.last_ns = 0
        self.closed = False
        self.failed: RecordingError | None = None
        """The write error that stopped this recording, if one did."""
        self._guard(lambda: self._writer.start(PROFILE, f"rgbdcast {__version__}"))
        if info is not None:
            meta = {"server": str(info.get("name", "")), "who": json.dumps(info)}
            self._guard(lambda: self._writer.add_metadata(METADATA_NAME, meta))

    def _guard(self, fn: Any) -> Any:
        if self.failed is not None:
            raise self.failed
        try:
            result = fn()
            self._file.flush()
            return result
        except OSError as exc:  # a full disk, a removed drive: stop with a clear reason
            self.failed = RecordingError(
                f"writing {self.path} failed: {exc.strerror or exc}; the file is readable up to "
                "its last complete chunk"
            )
            raise self.failed from exc

    @property
    def size(self) -> int:
        """Bytes in the file so far."""
        return self._file.tell() if not self._file.closed else self.path.stat().st_size

    def _channel(self, spec: ChannelSpec, device: str, kind: StreamKind | None, codec: str) -> int:
        ch = self._channels.get(spec.topic)
        if ch is not None:
            return ch
        name, encoding, text = spec.schema
        if name not in self._schemas:
            self._schemas[name] = self._writer.register_schema(name, encoding, text)
        meta = {"device": device, "codec": codec, "recorder": "rgbdcast"}
        if kind is not None:
            meta["stream"] = kind.value
            info = self._streams.get((device, kind))
            if info is not None:
                meta["stream_info"] = json.dumps(info)
        ch = self._writer.register_channel(
            spec.topic, spec.message_encoding, self._schemas[name], meta
        )
        self._channels[spec.topic] = ch
        return ch

    def write(self, encoded: EncodedFrame) -> None:
        """Append one frame (and its calibration, when it is new or changed)."""
        if self.closed:
            raise RecordingError("the recording is closed")
        h = encoded.header
        if h.au is not None and not self._video_continues(encoded):
            return
        spec, data = frame_message(encoded)
        ch = self._channel(spec, h.device_id, h.stream, h.codec)
        t_log = h.host_time_ns
        t_pub = h.device_time_ns
        key = f"{h.device_id}/{h.stream.value}"
        full = h.device_id in self._full and h.stream is not StreamKind.body
        if not full and h.intrinsics is not None and self._calibration.get(key) != h.intrinsics:
            cal = calibration_message(encoded)
            if cal is not None:
                cal_ch = self._channel(cal[0], h.device_id, h.stream, "calibration")
                self._guard(lambda: self._writer.add_message(cal_ch, t_log, cal[1], t_pub, 0))
                self._calibration[key] = h.intrinsics
        seq = h.seq & 0xFFFFFFFF
        self._guard(lambda: self._writer.add_message(ch, t_log, data, t_pub, seq))
        if h.stream is StreamKind.body:  # also as Foxglove shows bodies live (/<device>/bodies)
            scene = bodies_scene_message(encoded.decode())
            if scene is not None:
                scene_ch = self._channel(scene[0], h.device_id, None, "scene")
                self._guard(lambda: self._writer.add_message(scene_ch, t_log, scene[1], t_pub, seq))
        self.frames[key] += 1
        self.first_ns = self.first_ns or t_log
        self.last_ns = max(self.last_ns, t_log)

    def _video_continues(self, encoded: EncodedFrame) -> bool:
        """Whether a video unit continues its recorded run: a unit after a gap (lost before
        it reached us), or the first, is kept only if it is a keyframe, so that every unit in
        the file can be decoded. The units left out are counted in ``video_units_skipped``."""
        h = encoded.header
        key = f"{h.device_id}/{h.stream.value}"
        last = self._video_au.get(key)
        fresh = last is None or h.au != last + 1
        self._video_au[key] = int(h.au or 0)
        if fresh and not is_keyframe(h.codec, encoded.payload):
            self._video_au.pop(key, None)
            self.video_units_skipped += 1
            return False
        return True

    def write_calibration(
        self, cal: Calibration, t_ns: int, tables: dict[str, np.ndarray] | None = None
    ) -> None:
        """Append a device's calibration (when it is new or changed): the calibration itself,
        each camera's ``CameraCalibration``, the ``FrameTransform`` between its optical frames
        and, as attachments, its per-pixel *tables*."""
        if self.closed:
            raise RecordingError("the recording is closed")
        device = cal.device_id
        if self._revisions.get(device) == cal.revision:
            return
        for spec, data in full_calibration_messages(cal, t_ns):
            kind = None
            for k in StreamKind:
                if spec.topic == f"/{device}/{k.value}/calibration":
                    kind = k
            ch = self._channel(spec, device, kind, "calibration")
            self._guard(lambda ch=ch, data=data: self._writer.add_message(ch, t_ns, data, t_ns, 0))
        for name, table in (tables or {}).items():
            raw = np.ascontiguousarray(table, "<f4").tobytes()
            title = TABLE_ATTACHMENT.format(device=device, revision=cal.revision, table=name)
            self._guard(
                lambda title=title, raw=raw: self._writer.add_attachment(
                    t_ns, t_ns, title, "application/octet-stream", raw
                )
            )
        self._revisions[device] = cal.revision
        self._full.add(device)

    def write_rig(self, rig: RigFile, t_ns: int) -> None:
        """Append a rig file and each camera's place in the rig frame (``/rig``, ``/tf``)."""
        if self.closed:
            raise RecordingError("the recording is closed")
        for spec, data in rig_messages(rig, t_ns):
            ch = self._channel(spec, "rig", None, "rig")
            self._guard(lambda ch=ch, data=data: self._writer.add_message(ch, t_ns, data, t_ns, 0))

    def write_points(self, device: str, t_ns: int, points: np.ndarray, rgb: np.ndarray) -> None:
        """Append one colored cloud of *device* (float32 metres in its depth camera's optical
        frame, uint8 RGB) as a Foxglove ``PointCloud`` on ``/<device>/points``."""
        if self.closed:
            raise RecordingError("the recording is closed")
        spec, data = points_message(device, t_ns, points, rgb)
        ch = self._channel(spec, device, None, "points")
        self._guard(lambda: self._writer.add_message(ch, t_ns, data, t_ns, 0))
        self.frames[f"{device}/points"] += 1

    def close(self) -> None:
        """Write the summary and close the file (safe to call twice)."""
        if self.closed:
            return
        self.closed = True
        try:
            if self.failed is None:  # after a write error, the summary cannot be written
                self._guard(self._writer.finish)
        finally:
            try:
                self._file.close()
            except OSError:  # buffered bytes the full disk refuses: already reported
                if self.failed is None:
                    raise

    def __enter__(self) -> McapRecorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
