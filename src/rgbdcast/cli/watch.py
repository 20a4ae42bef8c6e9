"""``rgbdcast discover``, ``ping``, ``info``, ``stats`` and ``save``: look at servers that run."""

from __future__ import annotations

import argparse
import math
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

from ..errors import RgbdcastError, UsageError
from ..frames import StreamKind
from .common import add_zenoh_source, client_keys, connect, endpoint_arg, streams_type

__all__ = ["add_parsers"]


def add_parsers(sub: Any) -> None:
    p = sub.add_parser(
        "discover",
        help="list servers announced on the network",
        description="Browse Zeroconf for servers and show their devices.",
    )
    p.add_argument("--timeout", type=float, default=3.0, help="seconds to listen (default 3)")
    p.add_argument("--interface", action="append", metavar="IP", help="listen on this address")
    p.set_defaults(func=cmd_discover)

    p = sub.add_parser("ping", help="measure round-trip time to a server")
    endpoint_arg(p)
    p.add_argument("-n", "--count", type=int, default=4, help="pings to send (default 4)")
    p.set_defaults(func=cmd_ping)

    p = sub.add_parser("info", help="show a server's devices and streams (who/me)")
    endpoint_arg(p)
    p.add_argument("--json", action="store_true", help="print the raw me payload")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("stats", help="live per-stream fps, latency, drops and bandwidth")
    endpoint_arg(p)
    p.add_argument("--duration", type=float, default=5.0, help="seconds to measure (default 5)")
    p.add_argument(
        "--streams", type=streams_type, default=None, help="streams to watch (default all)"
    )
    p.add_argument("--device", action="append", help="device id to watch (default all)")
    p.add_argument(
        "--server",
        action="store_true",
        help="also show the server's side of each stream: frames handed to ZeroMQ per second "
        "(which drops them for a subscriber whose queue is full), frames "
        "its encoder was too busy for (busy/s), the mean encode time, and how often its "
        "publisher sat waiting for the source (src-wait: near 100%% means the camera sets "
        "the pace, near 0%% that encoding or sending does)",
    )
    add_zenoh_source(p)
    p.set_defaults(func=cmd_stats)

    p = sub.add_parser(
        "save",
        help="save frames of every stream to disk",
        description="Save N frames of each stream: PNG images, 16-bit PNG depth "
        "and infrared, JSON bodies; one folder per device, with the device's calibration.json. "
        "With --ply, N colored point clouds per device instead (binary PLY: Open3D, "
        "CloudCompare, MeshLab).",
    )
    endpoint_arg(p)
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument(
        "--ply",
        action="store_true",
        help="save registered, colored point clouds (needs the device's calibration)",
    )
    p.add_argument(
        "--decimate", type=int, default=1, help="with --ply: every Nth pixel of every Nth row"
    )
    p.add_argument("--device", action="append", help="only this device (repeatable)")
    p.add_argument("-n", "--frames", type=int, default=1, help="frames per stream (default 1)")
    p.add_argument(
        "--streams", type=streams_type, default=None, help="streams to save (default all)"
    )
    p.add_argument("--timeout", type=float, default=10.0, help="give up after this many seconds")
    p.set_defaults(func=cmd_save)


def cmd_ping(args: argparse.Namespace) -> int:
    with connect(args.endpoint, client_keys(args)) as client:
        print(f"pinging {client.server_name!r} at {client.control_endpoint}")
        rtts = []
        for i in range(max(1, args.count)):
            rtt = client.ping(timeout=3.0)
            rtts.append(rtt * 1000)
            print(f"pong {i + 1}: {rtt * 1000:.3f} ms", flush=True)
            if i + 1 < args.count:
                time.sleep(0.2)
        print(f"min/avg/max {min(rtts):.3f}/{sum(rtts) / len(rtts):.3f}/{max(rtts):.3f} ms")
        print(_clock_line(client))
    return 0


def _clock_line(client: Any) -> str:
    """``clock offset: +37.02 ms ± 0.05 ms`` (server clock minus ours), or why it is unknown."""
    est = client.clock_offset(timeout=3.0)
    if est is None:
        return "clock offset: unknown (the server does not tell its time: an older server)"
    return est.describe()


def _describe(me: dict[str, Any]) -> list[str]:
    lines = [f"server  {me.get('name')!r}  control {me.get('endpoints', {}).get('control')}"]
    for dev in me.get("devices", []):
        lines.append(f"  device {dev.get('id')}  {dev.get('name', '')}  ({dev.get('kind', '?')})")
        for kind, ep in dev.get("endpoints", {}).items():
            s = dev.get("streams", {}).get(kind, {})
            size = f"{s.get('width')}x{s.get('height')}" if s.get("width") else "-"
            lines.append(
                f"    {kind:<9} {size:>10} {s.get('fps', '?'):>5} fps"
                f"  codec {s.get('codec', '?'):<5} units {s.get('units', '?'):<9} {ep}"
            )
        lines.append("    " + _calibration_line(dev))
    return lines


def _calibration_line(dev: dict[str, Any]) -> str:
    """One line on a device's geometry, as who/me states it."""
    if "calibration_error" in dev:
        return f"calibration refused: {dev['calibration_error']}"
    cal = dev.get("calibration")
    if not isinstance(cal, dict):
        return "calibration: none (no geometry is claimed)"
    ext = cal.get("depth_to_color")
    what = "depth and color registered" if ext else "intrinsics only"
    if ext:
        baseline = sum(float(v) ** 2 for v in ext.get("translation", [])) ** 0.5
        what += f", color camera {baseline * 100:.1f} cm from depth"
    fit = cal.get("fit") or {}
    if "check_max_px" in fit:
        what += f", fitted within {float(fit['check_max_px']):.2f} px"
    tables = f", tables: {', '.join(cal['tables'])}" if cal.get("tables") else ""
    return f"calibration: {what} ({cal.get('source', '?')}){tables}"


def cmd_info(args: argparse.Namespace) -> int:
    with connect(args.endpoint, client_keys(args)) as client:
        me = client.who(timeout=3.0)
        clock = None if args.json else _clock_line(client)
    if args.json:
        import json

        print(json.dumps(me, indent=2))
    else:
        print("\n".join([*_describe(me), clock or ""]).rstrip())
    return 0


def _subscribe_all(
    client: Any, streams: Sequence[StreamKind] | None, devices: Sequence[str] | None = None
) -> list[Any]:
    subs = []
    for dev_id, rec in client.devices.items():
        if devices and dev_id not in devices:
            continue
        for kind in rec.endpoints:
            if kind in StreamKind.__members__ and (streams is None or StreamKind(kind) in streams):
                subs.append(client.subscribe(dev_id, kind))
    if not subs:
        raise UsageError("the server offers none of the requested streams")
    return subs


def cmd_stats(args: argparse.Namespace) -> int:
    if args.zenoh:
        if args.server:
            raise UsageError("--server is for a ZeroMQ endpoint, not --zenoh")
        return _stats_zenoh(args)
    if args.connect:
        raise UsageError("--connect is for --zenoh KEYEXPR")
    with connect(args.endpoint, client_keys(args)) as client:
        subs = _subscribe_all(client, args.streams, args.device)
        end = time.monotonic() + args.duration
        head = f"{'stream':<22}{'fps':>7}{'p50 ms':>9}{'p99 ms':>9}{'dropped':>9}{'Mbit/s':>9}"
        if args.server:
            head += f"{'sent/s':>9}{'busy/s':>8}{'enc ms':>8}{'src-wait':>9}"
            before = (time.monotonic(), client.server_stats()["streams"])
        print(head)
        while time.monotonic() < end:
            time.sleep(min(1.0, max(0.0, end - time.monotonic())))
            if args.server:
                now = (time.monotonic(), client.server_stats()["streams"])
            lines = []
            for s in subs:
                snap = s.snapshot()
                line = (
                    f"{s.device_id + '/' + s.kind.value:<22}{snap.fps:>7.1f}"
                    f"{snap.latency_p50_ms:>9.2f}{snap.latency_p99_ms:>9.2f}"
                    f"{snap.dropped:>9}{snap.mbit_s:>9.1f}"  # not queue_dropped: we never read
                )
                if args.server:
                    line += _server_columns(f"{s.device_id}/{s.kind.value}", before, now)
                lines.append(line)
            if args.server:
                before = now
            print("\n".join(lines), flush=True)
            if sys.stdout.isatty() and time.monotonic() < end:
                print(f"\x1b[{len(lines)}A", end="")
    return 0


def _server_columns(
    key: str, before: tuple[float, dict[str, Any]], now: tuple[float, dict[str, Any]]
) -> str:
    """One stream's server counters over the last interval, as the extra ``stats`` columns."""
    from ..net.publisher import stream_rates

    a, b = before[1].get(key), now[1].get(key)
    span = now[0] - before[0]
    if a is None or b is None or span <= 0:
        return f"{'-':>9}{'-':>8}{'-':>8}{'-':>9}"
    r = stream_rates(a, b, span)
    enc = "-" if math.isnan(r["encode_ms"]) else f"{r['encode_ms']:.2f}"
    wait = "-" if math.isnan(r["waited_share"]) else f"{100 * r['waited_share']:.0f}%"
    return f"{r['sent_fps']:>9.1f}{r['busy_fps']:>8.1f}{enc:>8}{wait:>9}"


def _stats_zenoh(args: argparse.Namespace) -> int:
    from ..zclient import ZenohClient

    with ZenohClient(connect=args.connect) as zc:
        sub = zc.subscribe(args.zenoh, decode=False)
        end = time.monotonic() + args.duration
        print(f"{'key':<44}{'fps':>7}{'p50 ms':>9}{'p99 ms':>9}{'dropped':>9}{'Mbit/s':>9}")
        while time.monotonic() < end:
            time.sleep(min(1.0, max(0.0, end - time.monotonic())))
            now = time.time_ns()
            lines = [
                f"{key:<44}{snap.fps:>7.1f}{snap.latency_p50_ms:>9.2f}"
                f"{snap.latency_p99_ms:>9.2f}{snap.dropped:>9}{snap.mbit_s:>9.1f}"
                for key, stats in sorted(sub.per_key.items())
                for snap in [stats.snapshot(now)]
            ] or [f"(nothing on {args.zenoh} yet)"]
            print("\n".join(lines), flush=True)
            if sys.stdout.isatty() and time.monotonic() < end:
                print(f"\x1b[{len(lines)}A", end="")
    return 0


def cmd_save(args: argparse.Namespace) -> int:
    from ..save import save_calibration, save_frames, save_point_clouds

    with connect(args.endpoint, client_keys(args)) as client:
        if args.ply:
            devices = args.device or list(client.devices)
            written = save_point_clouds(
                client, devices, args.out, args.frames, args.timeout, args.decimate, print
            )
        else:
            subs = _subscribe_all(client, args.streams, args.device)
            written = save_frames(subs, args.out, args.frames, args.timeout, progress=print)
            devices = sorted({sub.device_id for sub in subs})
        for device_id in devices:
            if save_calibration(client, device_id, args.out) is not None:
                written += 1
    print(f"saved {written} files under {args.out}")
    return 0


def cmd_discover(args: argparse.Namespace) -> int:
    from ..net.discovery import ServerBrowser, ServerInfo

    found: list[ServerInfo] = []
    lock = threading.Lock()

    def on_add(browser: Any, server_info: ServerInfo) -> None:
        with lock:
            found.append(server_info)
            print(f"+ {server_info.name}  {server_info.endpoint}", flush=True)
            try:
                with connect(server_info.endpoint) as client:
                    me = client.who(timeout=2.0)
                print("\n".join("    " + line for line in _describe(me)[1:]), flush=True)
            except RgbdcastError as exc:
                print(f"    (no answer: {exc})", flush=True)

    def on_remove(browser: Any, server_info: ServerInfo) -> None:
        print(f"- {server_info.name}  {server_info.endpoint}", flush=True)

    print(f"looking for servers for {args.timeout:g} s ...", flush=True)
    with ServerBrowser(interfaces=args.interface) as browser:
        ServerBrowser.on_add_server.connect(on_add, sender=browser)
        ServerBrowser.on_remove_server.connect(on_remove, sender=browser)
        time.sleep(args.timeout)
    print(f"{len(found)} server(s) found")
    return 0
