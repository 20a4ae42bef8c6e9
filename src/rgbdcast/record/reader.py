"""Reading MCAP recordings: complete ones, and ones whose writer was killed.

How this works: records are read in file order with MCAP's streaming reader (chunks are
decompressed as they come), so a file that ends in the middle of a chunk (the recorder was
killed) yields every message up to its last complete chunk and is then marked ``truncated``.
Channels written by rgbdcast carry ``device`` and ``stream`` in their metadata; messages of
those channels become :class:`~rgbdcast.frames.Frame` values again.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
from mcap import records as rec
from mcap.exceptions import McapError
from mcap.stream_reader import StreamReader, breakup_chunk

from ..errors import ProtocolError, RecordingError, UsageError
from ..frames import Frame, StreamKind
from ..geometry.calibration import Calibration
from .mcapfile import METADATA_NAME, message_frame

__all__ = ["ChannelInfo", "Recording"]

MAGIC = b"\x89MCAP0\r\n"
MAX_RECORD_BYTES = 1 << 30
MAX_CHUNK_BYTES = 256 << 20
"""A chunk claiming more than this once decompressed is treated as damage (no bombs)."""


class _Bounded:
    """A file whose reads never ask for more than what is left in it: a record claiming a huge
    length then reads short (and counts as cut) instead of allocating that much memory."""

    def __init__(self, f: Any, size: int) -> None:
        self._f, self._size = f, size

    def read(self, n: int = -1) -> bytes:
        left = max(0, self._size - self._f.tell())
        return bytes(self._f.read(left if n is None or n < 0 else min(n, left)))


@dataclass
class ChannelInfo:
    id: int
    topic: str
    schema: str
    encoding: str
    device: str | None
    stream: StreamKind | None
    codec: str
    info: dict[str, Any]
    messages: int = 0
    bytes: int = 0
    first_ns: int = 0
    last_ns: int = 0
    first_seq: int | None = None
    last_seq: int | None = None

    @property
    def is_frames(self) -> bool:
        """True for a device stream (not its calibration, nor a foreign channel)."""
        return self.device is not None and self.stream is not None and self.codec != "calibration"


@dataclass
class Recording:
    """An MCAP file. :meth:`scan` reads it once for :meth:`summary`; :meth:`frames` replays it."""

    path: Path
    channels: dict[int, ChannelInfo] = field(default_factory=dict)
    metadata: dict[str, dict[str, str]] = field(default_factory=dict)
    truncated: bool = False
    closed_properly: bool = False
    skipped: int = 0
    calibrations: dict[str, list[tuple[int, Calibration]]] = field(default_factory=dict)
    """Per device, each calibration recorded and its log time, in file order."""
    tables: dict[tuple[str, str, str], np.ndarray] = field(default_factory=dict)
    """Per-pixel tables by ``(device, calibration revision, name)``."""
    bad_calibrations: list[str] = field(default_factory=list)
    """Why each recorded calibration that was refused on reading was refused."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.channels, self.metadata = {}, {}
        self.calibrations, self.tables, self.bad_calibrations = {}, {}, []
        self.truncated = self.closed_properly = False
        self.skipped = 0
        try:
            with open(self.path, "rb") as f:
                head = f.read(len(MAGIC))
        except OSError as exc:
            raise RecordingError(f"cannot read {self.path}: {exc.strerror}") from exc
        if head != MAGIC:
            raise RecordingError(f"{self.path} is not an MCAP file (no MCAP magic at its start)")

    # -- records --------------------------------------------------------------------------
    def _records(self) -> Iterator[Any]:
        self.truncated = False
        with open(self.path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            reader = StreamReader(
                cast(Any, _Bounded(f, size)),
                validate_crcs=True,
                emit_chunks=True,
                record_size_limit=MAX_RECORD_BYTES,
            )
            try:
                for record in reader.records:
                    if isinstance(record, rec.Chunk):
                        if record.uncompressed_size > MAX_CHUNK_BYTES:
                            raise ValueError(f"chunk claims {record.uncompressed_size} bytes")
                        yield from breakup_chunk(record, validate_crc=True)
                        continue
                    if isinstance(record, rec.Footer):
                        self.closed_properly = True
                    yield record
            except (
                McapError,
                EOFError,
                struct.error,
                ValueError,
                OSError,
                RuntimeError,
                OverflowError,  # lengths beyond any index, inside a chunk
            ):
                # cut short (killed writer, full disk) or damaged from here on
                self.truncated = True
            except Exception as exc:  # zstd/lz4 errors on a cut chunk, and the like
                if type(exc).__module__.split(".")[0] in ("zstandard", "lz4", "_zstd"):
                    self.truncated = True
                else:
                    raise

    def _channel(self, record: Any, schemas: dict[int, Any]) -> ChannelInfo:
        meta = dict(record.metadata)
        schema = schemas.get(record.schema_id)
        stream: StreamKind | None
        try:
            stream = StreamKind(meta["stream"]) if "stream" in meta else None
        except ValueError:
            stream = None
        try:
            info = json.loads(meta.get("stream_info", "{}"))
        except ValueError:
            info = {}
        return ChannelInfo(
            id=record.id,
            topic=record.topic,
            schema=schema.name if schema is not None else "",
            encoding=record.message_encoding,
            device=meta.get("device"),
            stream=stream,
            codec=meta.get("codec", ""),
            info=info if isinstance(info, dict) else {},
        )

    def scan(self) -> Recording:
        """Read the whole file once: channels, message counts, times, metadata."""
        schemas: dict[int, Any] = {}
        self.channels = {}
        self.closed_properly = False
        self.calibrations, self.tables, self.bad_calibrations = {}, {}, []
        attachments = []  # written beside the chunks, so maybe before their calibration
        for record in self._records():
            if isinstance(record, rec.Schema):
                schemas[record.id] = record
            elif isinstance(record, rec.Channel) and record.id not in self.channels:
                self.channels[record.id] = self._channel(record, schemas)
            elif isinstance(record, rec.Message):
                ch = self.channels.get(record.channel_id)
                if ch is not None:
                    ch.messages += 1
                    ch.bytes += len(record.data)
                    ch.first_ns = ch.first_ns or record.log_time
                    ch.last_ns = max(ch.last_ns, record.log_time)
                    seq = record.sequence
                    ch.first_seq = seq if ch.first_seq is None else min(ch.first_seq, seq)
                    ch.last_seq = seq if ch.last_seq is None else max(ch.last_seq, seq)
                    if ch.schema == "rgbdcast.Calibration" and ch.device:
                        self._read_calibration(ch.device, record)
            elif isinstance(record, rec.Metadata):
                self.metadata[record.name] = dict(record.metadata)
            elif isinstance(record, rec.Attachment):
                attachments.append(record)
        for record in attachments:
            self._read_table(record)
        if not any(ch.is_frames for ch in self.channels.values()):
            topics = ", ".join(sorted(ch.topic for ch in self.channels.values())) or "none"
            why = " (the file ends before any data)" if self.truncated else ""
            raise RecordingError(f"{self.path} holds no rgbdcast streams{why}; topics: {topics}")
        return self

    def _read_calibration(self, device: str, record: Any) -> None:
        try:
            cal = Calibration.from_dict(json.loads(bytes(record.data)))
            if cal.device_id != device:
                raise UsageError(f"it is {cal.device_id}'s, on {device}'s channel")
        except (ValueError, UsageError) as exc:
            self.bad_calibrations.append(f"{device}: {exc}")
            return
        self.calibrations.setdefault(device, []).append((record.log_time, cal))

    def _read_table(self, record: Any) -> None:
        parts = record.name.split("/")
        if len(parts) != 4 or parts[0] != "rgbdcast":
            return
        _, device, revision, name = parts
        cal = next(
            (c for _, c in self.calibrations.get(device, []) if c.revision == revision), None
        )
        if cal is None or cal.depth is None or name not in cal.tables:
            self.bad_calibrations.append(f"{device}: a table {name!r} without its calibration")
            return
        want = (cal.depth.height, cal.depth.width, 2)
        data = bytes(record.data)
        if len(data) != 4 * want[0] * want[1] * 2:
            self.bad_calibrations.append(f"{device}: table {name!r} is not float32 {want}")
            return
        table = np.frombuffer(data, "<f4").reshape(want)
        if not np.isfinite(table).all():
            self.bad_calibrations.append(f"{device}: table {name!r} holds NaN or infinity")
            return
        self.tables[(device, revision, name)] = table

    @property
    def devices(self) -> dict[str, list[ChannelInfo]]:
        out: dict[str, list[ChannelInfo]] = {}
        for ch in self.channels.values():
            if ch.is_frames:
                assert ch.device is not None
                out.setdefault(ch.device, []).append(ch)
        return out

    @property
    def server(self) -> dict[str, Any]:
        """The recorded server's who/me payload (empty if not stored)."""
        try:
            who = json.loads(self.metadata.get(METADATA_NAME, {}).get("who", "{}"))
        except ValueError:
            return {}
        return who if isinstance(who, dict) else {}

    def frames(self, device: str | None = None) -> Iterator[tuple[int, Frame]]:
        """``(log_time_ns, frame)`` in file order; malformed messages are skipped and counted
        in :attr:`skipped`. Frames keep their recorded sequence numbers and device times."""
        schemas: dict[int, Any] = {}
        channels: dict[int, ChannelInfo] = {}
        chains: dict[int, dict[str, Any]] = {}  # video channels: units numbered, decoded on demand
        for record in self._records():
            if isinstance(record, rec.Schema):
                schemas[record.id] = record
            elif isinstance(record, rec.Channel) and record.id not in channels:
                channels[record.id] = self._channel(record, schemas)
            elif isinstance(record, rec.Message):
                ch = channels.get(record.channel_id)
                if ch is None or not ch.is_frames or (device and ch.device != device):
                    continue
                assert ch.device is not None and ch.stream is not None
                try:
                    frame = message_frame(
                        ch.device,
                        ch.stream,
                        ch.schema,
                        record.data,
                        record.sequence,
                        record.publish_time,
                        record.log_time,
                        chains.setdefault(record.channel_id, {}),
                    )
                except ProtocolError:
                    self.skipped += 1
                    continue
                if frame is None:  # a video unit before the first keyframe
                    self.skipped += 1
                    continue
                yield record.log_time, frame

    def summary(self) -> dict[str, Any]:
        """What ``rgbdcast inspect`` prints, as data."""
        frames = [ch for ch in self.channels.values() if ch.is_frames]
        first = min((ch.first_ns for ch in frames if ch.messages), default=0)
        last = max((ch.last_ns for ch in frames), default=0)
        return {
            "file": str(self.path),
            "bytes": self.path.stat().st_size,
            "closed_properly": self.closed_properly,
            "truncated": self.truncated,
            "server": self.server.get("name", ""),
            "duration_s": (last - first) / 1e9 if last else 0.0,
            "streams": [
                {
                    "device": ch.device,
                    "stream": ch.stream.value if ch.stream else None,
                    "topic": ch.topic,
                    "schema": ch.schema,
                    "codec": ch.codec,
                    "frames": ch.messages,
                    "bytes": ch.bytes,
                    "fps": (ch.messages - 1) / ((ch.last_ns - ch.first_ns) / 1e9)
                    if ch.messages > 1 and ch.last_ns > ch.first_ns
                    else 0.0,
                    "width": ch.info.get("width"),
                    "height": ch.info.get("height"),
                }
                for ch in sorted(frames, key=lambda c: c.topic)
            ],
            "calibrations": [
                {
                    "device": device,
                    "revision": cal.revision,
                    "source": cal.source,
                    "registered": cal.registrable,
                    "tables": [n for n in cal.tables if (device, cal.revision, n) in self.tables],
                }
                for device, cals in sorted(self.calibrations.items())
                for _, cal in cals
            ],
            "bad_calibrations": list(self.bad_calibrations),
        }
