"""``rgbdcast record`` and ``rgbdcast inspect``."""

from __future__ import annotations

import argparse
import contextlib
import queue
import sys
import time
from pathlib import Path
from typing import Any

from ..errors import RgbdcastError, UsageError
from ..frames import StreamKind
from .common import client_keys, install_stop_signals, streams_type

__all__ = ["add_parsers"]

QUEUE_FRAMES = 64
"""Frames waiting for the writer at most; more are dropped and counted (a disk too slow)."""


def add_parsers(sub: Any) -> None:
    p = sub.add_parser(
        "record",
        help="record a server's streams to an MCAP file",
        description="Record every stream (or those chosen) of a server to MCAP, readable by "
        "Foxglove and replayable with  rgbdcast serve --replay FILE. Stop with Ctrl-C; a "
        "recording that is killed stays readable up to its last complete chunk.",
    )
    p.add_argument(
        "endpoint", nargs="?", help="server to record (default: the first one discovered)"
    )
    p.add_argument("--out", "-o", required=True, help="the .mcap file to write")
    p.add_argument("--streams", type=streams_type, default=None, help="streams (default all)")
    p.add_argument("--device", action="append", help="device id to record (default all)")
    p.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    p.add_argument("--chunk-mb", type=float, default=1.0, help="MCAP chunk size in MB (default 1)")
    p.add_argument(
        "--compression", choices=["zstd", "lz4", "none"], default="zstd", help="chunk compression"
    )
    p.add_argument(
        "--points",
        action="store_true",
        help="also write each frameset's colored point cloud (Foxglove PointCloud on "
        "/<device>/points, so Foxglove shows the recording in 3-D); decodes depth and color",
    )
    p.add_argument(
        "--points-decimate",
        type=int,
        default=1,
        metavar="N",
        help="with --points: every Nth pixel of every Nth row (default 1: all)",
    )
    p.add_argument(
        "--rig",
        metavar="FILE",
        default=None,
        help="record every camera a rig file names (on all its servers), with each camera's "
        "place in the rig frame (FrameTransform on /tf) so Foxglove shows the rig",
    )
    p.add_argument("--interface", action="append", metavar="IP", help="discover on this address")
    p.add_argument(
        "--secure", metavar="DIR", default=None, help="client keys for a --secure server"
    )
    p.set_defaults(func=cmd_record)

    p = sub.add_parser(
        "inspect",
        help="show what an MCAP recording holds",
        description="Print the devices, streams, frame counts, duration and size of a recording.",
    )
    p.add_argument("file", help="an .mcap file")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=cmd_inspect)


def _find_server(interfaces: list[str] | None) -> str:
    from ..net.discovery import ServerBrowser

    with ServerBrowser(interfaces=interfaces) as browser:
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline and not browser.servers:
            time.sleep(0.1)
        found = browser.servers
    if not found:
        raise UsageError("no server found on the network; give its endpoint (tcp://host:port)")
    if len(found) > 1:
        names = ", ".join(f"{s.name} ({s.endpoint})" for s in found)
        print(f"several servers found: {names}; recording the first", flush=True)
    return found[0].endpoint


def cmd_record(args: argparse.Namespace) -> int:
    from ..client import Client
    from ..record.writer import McapRecorder

    rig, sources = _sources(args)
    if args.chunk_mb <= 0 or (args.duration is not None and args.duration <= 0):
        raise UsageError("--chunk-mb and --duration must be positive")
    stop = install_stop_signals()
    pending: queue.Queue[Any] = queue.Queue(QUEUE_FRAMES)
    dropped = [0]

    def on_frame(client: Any, frame: Any = None, subscription: Any = None) -> None:
        subscription.latest(timeout=0)  # the recorder takes frames from here, not the queue
        try:
            pending.put_nowait(frame)
        except queue.Full:
            dropped[0] += 1

    with contextlib.ExitStack() as stack:
        clients = {
            ep: stack.enter_context(Client(ep, reconnect=True, curve=client_keys(args)))
            for ep in sources
        }
        infos = [c.who(timeout=3.0) for c in clients.values()]
        chosen, owner = _choose(clients, sources, set(args.streams or StreamKind))
        out = Path(args.out)
        recorder = McapRecorder(
            out,
            info=infos[0] if len(infos) == 1 else {"name": f"rig of {len(infos)}", "rig": infos},
            streams=chosen,
            chunk_bytes=int(args.chunk_mb * (1 << 20)),
            compression=args.compression,
        )
        if rig is not None:
            recorder.write_rig(rig, time.time_ns())
        calibrations = _CalibrationWriter(
            owner, _PointsWriter(owner, args.points_decimate) if args.points else None
        )
        subs: list[Any] = []
        started = time.monotonic()
        next_line = started + 1.0
        tty = sys.stdout.isatty()
        try:  # from here on the recording is closed properly whatever happens
            for client in clients.values():
                client.on_frame.connect(on_frame, sender=client, weak=False)
            for d, k in chosen:
                subs.append(owner[d].subscribe(d, k, decode=False, queue_size=1))
            names = ", ".join(repr(c.server_name) for c in clients.values())
            print(f"recording {len(subs)} streams of {names} to {out}", flush=True)
            while not stop.is_set():
                now = time.monotonic()
                if args.duration is not None and now - started >= args.duration:
                    break
                with contextlib.suppress(queue.Empty):
                    calibrations.write(recorder, pending.get(timeout=0.1))
                if now >= next_line:
                    next_line = now + (1.0 if tty else 5.0)
                    line = _progress(recorder, subs, dropped[0], now - started)
                    print(("\r" + line) if tty else line, end="" if tty else "\n", flush=True)
        finally:
            for client in clients.values():
                client.on_frame.disconnect(on_frame, sender=client)
            while recorder.failed is None:  # what already arrived is kept
                try:
                    calibrations.write(recorder, pending.get_nowait())
                except queue.Empty:
                    break
            recorder.close()
            if recorder.failed is not None:
                raise recorder.failed
            line = _progress(recorder, subs, dropped[0], time.monotonic() - started)
            print(("\n" if tty else "") + "done: " + line, flush=True)
    return 0


def _sources(args: argparse.Namespace) -> tuple[Any, dict[str, set[str] | None]]:
    """The rig file (with --rig) and, per server endpoint, the device ids to record (None:
    all, or those of --device)."""
    if args.rig is None:
        endpoint = args.endpoint or _find_server(args.interface)
        return None, {endpoint: set(args.device) if args.device else None}
    from ..rig import load_rig_file

    if args.endpoint or args.device:
        raise UsageError("--rig records the cameras its file names: give no endpoint or --device")
    rig = load_rig_file(args.rig)
    sources: dict[str, set[str] | None] = {}
    for key in rig.devices:
        endpoint, device = key.split(" ", 1)
        devices = sources.setdefault(endpoint, set())
        assert devices is not None
        devices.add(device)
    return rig, sources


def _choose(
    clients: dict[str, Any], sources: dict[str, set[str] | None], wanted: set[StreamKind]
) -> tuple[dict[tuple[str, StreamKind], Any], dict[str, Any]]:
    """The streams to record and, per device id, the client of its server (ids are topics in
    the recording: two servers' devices must not share one)."""
    chosen: dict[tuple[str, StreamKind], Any] = {}
    owner: dict[str, Any] = {}
    for endpoint, client in clients.items():
        only = sources[endpoint]
        missing = sorted((only or set()) - set(client.devices))
        if missing:
            raise UsageError(f"{endpoint} has no device {', '.join(missing)}")
        for dev_id, rec in client.devices.items():
            if only is not None and dev_id not in only:
                continue
            if dev_id in owner:
                raise UsageError(
                    f"device {dev_id} is on {owner[dev_id].control_endpoint} and {endpoint}: a "
                    "recording names streams by device id, so record them separately"
                )
            owner[dev_id] = client
            for k, info in rec.streams.items():
                if StreamKind(k) in wanted:
                    chosen[(dev_id, StreamKind(k))] = info
    if not chosen:
        raise UsageError(f"nothing to record: no such devices or streams on {', '.join(clients)}")
    return chosen, owner


class _CalibrationWriter:
    """Writes each device's calibration (and its tables) into the recording before the first
    frame that names it, so a calibration fitted or changed while recording is recorded too."""

    def __init__(self, owner: dict[str, Any], points: _PointsWriter | None = None) -> None:
        self.owner = owner
        """The client of each device's server."""
        self.points = points
        self.seen: set[tuple[str, str]] = set()

    def write(self, recorder: Any, encoded: Any) -> None:
        h = encoded.header
        if h.calib is not None and (h.device_id, h.calib) not in self.seen:
            self.seen.add((h.device_id, h.calib))
            try:
                client = self.owner[h.device_id]
                cal = client.calibration(h.device_id, h.calib, timeout=3.0)
                tables = {n: client.calibration_table(h.device_id, n, 5.0) for n in cal.tables}
                recorder.write_calibration(
                    cal, h.host_time_ns, {n: t for n, t in tables.items() if t is not None}
                )
            except (RgbdcastError, TimeoutError) as exc:
                print(f"\nnote: {h.device_id}'s calibration is not recorded: {exc}", flush=True)
        recorder.write(encoded)
        if self.points is not None:
            self.points.write(recorder, encoded)


class _PointsWriter:
    """Pairs each device's depth and color of one frameset and writes their colored cloud."""

    def __init__(self, owner: dict[str, Any], decimate: int) -> None:
        if not 1 <= decimate <= 16:
            raise UsageError(f"--points-decimate must be 1..16, got {decimate}")
        self.owner, self.decimate = owner, decimate
        self.held: dict[tuple[str, StreamKind], Any] = {}
        self.failed: set[str] = set()

    def write(self, recorder: Any, encoded: Any) -> None:
        h = encoded.header
        if h.stream not in (StreamKind.depth, StreamKind.color) or h.device_id in self.failed:
            return
        self.held[(h.device_id, h.stream)] = encoded
        other = StreamKind.color if h.stream is StreamKind.depth else StreamKind.depth
        mate = self.held.get((h.device_id, other))
        if mate is None or mate.header.frameset_id != h.frameset_id:
            return
        del self.held[(h.device_id, other)], self.held[(h.device_id, h.stream)]
        try:
            frames = [encoded.decode(), mate.decode()]
            client = self.owner[h.device_id]
            cloud = client.point_cloud(frames, decimate=self.decimate, timeout=3.0)
        except (RgbdcastError, TimeoutError) as exc:
            self.failed.add(h.device_id)
            print(f"\nnote: no point clouds of {h.device_id}: {exc}", flush=True)
            return
        recorder.write_points(h.device_id, h.host_time_ns, cloud.points, cloud.colors)


def _progress(recorder: Any, subs: list[Any], writer_drops: int, elapsed: float) -> str:
    counts = " ".join(f"{k.split('/')[-1]} {n}" for k, n in sorted(recorder.frames.items()))
    lost = sum(s.snapshot().dropped for s in subs)
    video = recorder.video_units_skipped
    return (
        f"{elapsed:6.1f} s  {counts or 'waiting for frames'}  {recorder.size / 1e6:.1f} MB  "
        f"dropped {lost} in transit, {writer_drops} by a slow disk"
        + (f", {video} video units waiting for a keyframe" if video else "")
    )


def cmd_inspect(args: argparse.Namespace) -> int:
    import json

    from ..record.reader import Recording

    summary = Recording(args.file).scan().summary()
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    state = (
        "closed properly"
        if summary["closed_properly"]
        else "NOT closed properly (the recording was interrupted); readable up to its last "
        "complete chunk"
    )
    size, duration = summary["bytes"] / 1e6, summary["duration_s"]
    print(f"{summary['file']}: {size:.1f} MB, {duration:.1f} s, {state}")
    if summary["server"]:
        print(f"recorded from {summary['server']!r}")
    print(f"{'device':<12}{'stream':<10}{'frames':>8}{'fps':>7}{'MB':>9}  {'size':<11}schema")
    for s in summary["streams"]:
        size = f"{s['width']}x{s['height']}" if s["width"] else "-"
        print(
            f"{s['device']:<12}{s['stream']:<10}{s['frames']:>8}{s['fps']:>7.1f}"
            f"{s['bytes'] / 1e6:>9.1f}  {size:<11}{s['schema']} ({s['codec']})"
        )
    for c in summary["calibrations"]:
        what = "registered depth and color" if c["registered"] else "intrinsics only"
        tables = f", tables: {', '.join(c['tables'])}" if c["tables"] else ""
        print(f"calibration {c['device']} {c['revision']}: {what} ({c['source']}){tables}")
    for reason in summary["bad_calibrations"]:
        print(f"calibration refused: {reason}")
    return 0
