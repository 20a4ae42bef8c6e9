"""``rgbdcast bench``: measure the data path end to end and record it in BENCHMARKS.md.

How this works: the server runs in its own process (``rgbdcast serve`` with a pre-rendered mock
device, so its CPU is the cost of serving and not of drawing frames); each subscriber is one more
process (``python -m rgbdcast.bench sub``) that receives and decodes frames for the measured
window and prints a JSON line with its counts, latency percentiles (capture to decoded, one
host clock) and CPU. The parent samples the server's CPU and memory over the same window.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psutil

from .bench_source import CpuSpan, format_cpu_by_thread, source_share
from .errors import UsageError

__all__ = ["add_parser", "machine_description", "run_e2e", "write_section"]


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "bench",
        help="measure fps, latency, drops and CPU end to end",
        description="Run a mock server and N subscriber processes on this machine, print the "
        "figures and (with --write) record them in BENCHMARKS.md with the command.",
    )
    p.add_argument(
        "--suite",
        choices=["all", "codecs", "e2e", "peers", "gateway", "web", "zenoh"],
        default="all",
        help="what to measure: the codec table, the end-to-end runs, or both (default all)",
    )
    p.add_argument(
        "--data",
        default=None,
        metavar="DIR",
        help="real depth frames for the codec table ($RGBDCAST_DATA or ../shared/data/depth)",
    )
    p.add_argument(
        "--subscribers",
        type=int,
        nargs="+",
        default=[1, 8],
        help="subscriber counts to run, one run each (default: 1 8)",
    )
    p.add_argument(
        "--streams", default="depth", help="streams to serve and receive (default depth)"
    )
    p.add_argument("--fps", type=float, default=30.0, help="mock frame rate (default 30)")
    p.add_argument("--duration", type=float, default=10.0, help="measured seconds per run")
    p.add_argument("--warmup", type=float, default=2.0, help="seconds before measuring")
    p.add_argument("--port", type=int, default=0, help="control port (default: a free one)")
    p.add_argument("--repeat", type=int, default=1, help="runs of each configuration (default 1)")
    p.add_argument("--depth-codec", default=None, help="serve depth with this codec")
    p.add_argument("--color-codec", default=None, help="serve color with this codec")
    p.add_argument("--color-quality", default=None, type=int, help="JPEG quality to serve")
    p.add_argument("--color-strips", default=None, type=int, help="JPEG strips to serve")
    p.add_argument(
        "--source",
        choices=["mock", "replay"],
        default="mock",
        help="what the server serves: the pre-rendered mock (color encoded on the server), or a "
        "recording of it replayed in a loop (color passed through as recorded) (default mock)",
    )
    p.add_argument(
        "--replay",
        metavar="FILE",
        default=None,
        help="with --source replay: this recording (default: record the mock first)",
    )
    p.add_argument(
        "--replay-seconds",
        type=float,
        default=10.0,
        metavar="S",
        help="with --source replay and no FILE: seconds of the mock to record (default 10)",
    )
    p.add_argument(
        "--no-decode",
        action="store_true",
        help="rgbdcast subscribers take frames as sent (EncodedFrame), not decoded",
    )
    p.add_argument(
        "--slow",
        type=int,
        default=0,
        metavar="N",
        help="N of the subscribers read only one frame a second",
    )
    p.add_argument(
        "--slow-compare",
        action="store_true",
        help="with --slow: alternate each run with one without the slow subscribers (the "
        "others alone), and write the two side by side",
    )
    p.add_argument(
        "--no-peer",
        action="store_true",
        help="skip the plain-pyzmq subscribers measured beside ours (the ceiling)",
    )
    p.add_argument(
        "--soak",
        type=float,
        default=None,
        metavar="SECONDS",
        help="instead of the suites: every stream to 8 subscribers (2 reconnecting) for "
        "SECONDS, checking a CRC on every frame; memory and threads over time",
    )
    p.add_argument(
        "--write",
        metavar="FILE",
        nargs="?",
        const="BENCHMARKS.md",
        help="record the results in FILE (default BENCHMARKS.md)",
    )
    p.set_defaults(func=cmd_bench)


def stop_processes(procs: Sequence[subprocess.Popen[str]]) -> None:
    """Terminate the processes of a run, then kill those that do not end within 10 s."""
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))]


PRERENDER = 10
"""Framesets the bench's mock renders up front and loops (about 70 MB with 1080p color)."""


def serve_command(
    port: int,
    streams: str,
    fps: float,
    duration: float,
    prerender: int,
    extra: list[str] | None = None,
) -> list[str]:
    """``rgbdcast serve`` of a pre-rendered mock on loopback, unannounced, for *duration* s."""
    return [
        sys.executable,
        "-m",
        "rgbdcast",
        "serve",
        "--bind",
        "127.0.0.1",
        "--port",
        str(port),
        "--no-announce",
        "--quiet",
        "--streams",
        streams,
        "--fps",
        str(fps),
        "--prerender",
        str(prerender),
        "--duration",
        str(duration),
        *([] if "--web" in (extra or []) else ["--no-web"]),
        *(extra or []),
    ]


def run_e2e(
    subscribers: int,
    streams: str,
    fps: float,
    duration: float,
    warmup: float,
    port: int = 0,
    client: str = "rgbdcast",
    no_decode: bool = False,
    slow: int = 0,
    serve_args: list[str] | None = None,
    viewers: int = 0,
    web_port: int = 0,
    source_args: list[str] | None = None,
) -> dict[str, Any]:
    """One run: a server process and *subscribers* subscriber processes (and *viewers* web
    viewer processes on *web_port*). Returns the figures."""
    port = port or _free_port()
    endpoint = f"tcp://127.0.0.1:{port}"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    server = subprocess.Popen(
        serve_command(
            port,
            streams,
            fps,
            warmup + duration + 30,
            PRERENDER,
            [*(serve_args or []), *(source_args or [])],
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
    )
    subs: list[subprocess.Popen[str]] = []
    try:
        assert server.stdout is not None
        line = server.stdout.readline()  # waits until it serves (pre-rendering takes a moment)
        if "serving" not in line:
            err = server.stderr.read() if server.stderr else ""
            raise UsageError(f"bench server did not start: {line.strip()} {err.strip()}")
        sproc = psutil.Process(server.pid)
        base = [
            sys.executable,
            "-m",
            "rgbdcast.bench",
            "sub",
            endpoint,
            "--client",
            client,
            "--streams",
            streams,
            "--duration",
            str(duration),
            "--warmup",
            str(warmup),
        ]
        if no_decode:
            base.append("--no-decode")
        subs = [
            subprocess.Popen(
                base + (["--slow"] if i < slow else []),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=env,
                text=True,
            )
            for i in range(subscribers)
        ]
        viewer_cmd = [sys.executable, "-m", "rgbdcast.bench_web", "viewer", "--warmup", str(warmup)]
        viewer_procs = [
            subprocess.Popen(
                [*viewer_cmd, f"ws://127.0.0.1:{web_port}/ws", "--duration", str(duration)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=env,
                text=True,
            )
            for _ in range(viewers)
        ]
        subs += viewer_procs
        time.sleep(warmup + 1.0)  # subscribers connect and warm up
        span = CpuSpan(sproc)
        span.start()
        t0 = time.monotonic()
        rss = [sproc.memory_info().rss]
        while time.monotonic() - t0 < duration - 1.0:
            time.sleep(0.5)
            rss.append(sproc.memory_info().rss)
        cpu = span.stop("server")
        results = []
        viewer_results = []
        for p in viewer_procs:
            out, err = p.communicate(timeout=duration + warmup + 60)
            lines = [ln for ln in out.splitlines() if ln.startswith("{")]
            if not lines:
                raise UsageError(f"bench viewer failed: {err.strip()[-300:]}")
            viewer_results.append(json.loads(lines[-1]))
        for p in subs:
            if p in viewer_procs:
                continue
            out, err = p.communicate(timeout=duration + warmup + 60)
            lines = [ln for ln in out.splitlines() if ln.startswith("{")]
            if not lines:
                raise UsageError(f"bench subscriber failed: {err.strip()[-300:]}")
            result = json.loads(lines[-1])
            if client == "rgbdcast" and result["decoded"] == no_decode:
                raise UsageError("a bench subscriber ran in the wrong decode mode")
            results.append(result)
    finally:
        stop_processes([*subs, server])
    per_stream: dict[str, dict[str, Any]] = {}
    slow_fps = [st["fps"] for r in results if r.get("slow") for st in r["streams"].values()]
    for r in results:
        if r.get("slow"):
            continue  # reported on their own: the figures are the others'
        for name, s in r["streams"].items():
            agg = per_stream.setdefault(name, {"fps": [], "lat": [], "dropped": 0, "mbit": []})
            agg["fps"].append(s["fps"])
            agg["lat"].extend(s["latencies_ms"])
            agg["dropped"] += s["dropped"]
            agg["mbit"].append(s["mbit_s"])
    return {
        "client": client,
        "decode": not no_decode and client == "rgbdcast",
        "slow": slow,
        "slow_fps": slow_fps,
        "subscribers": subscribers,
        **cpu,  # server_cpu_percent, server_threads
        "source_cpu_percent": source_share(cpu["server_threads"]),
        "server_rss_mb": max(rss) / 1e6,
        "subscriber_cpu_percent": [r["cpu_percent"] for r in results],
        "viewers": viewer_results,
        "streams": {
            name: {
                "fps_min": min(a["fps"]),
                "fps_mean": sum(a["fps"]) / len(a["fps"]),
                "latency_p50_ms": _pct(a["lat"], 0.5),
                "latency_p99_ms": _pct(a["lat"], 0.99),
                "dropped": a["dropped"],
                "mbit_s_each": sum(a["mbit"]) / len(a["mbit"]),
            }
            for name, a in per_stream.items()
        },
    }


def _consume(
    sub: Any, warmup_until: float, end: float, out: dict[str, Any], slow: bool = False
) -> None:
    """Take frames the way user code does; measure only after *warmup_until*."""
    lat: list[float] = []
    frames = dropped = 0
    last_seq = None
    while True:
        now = time.monotonic()
        if now >= end:
            break
        try:
            frame = sub.get(timeout=end - now)
        except (TimeoutError, UsageError):
            break
        received = time.time_ns()
        if time.monotonic() < warmup_until:
            last_seq = frame.seq
            continue
        frames += 1
        if slow:
            time.sleep(1.0)  # a consumer that takes one frame a second
        lat.append((received - frame.host_time_ns) / 1e6)
        if last_seq is not None and frame.seq > last_seq + 1:
            dropped += frame.seq - last_seq - 1
        last_seq = frame.seq
    out.update(frames=frames, dropped=dropped, latencies_ms=lat)


def _sub_main(argv: Sequence[str]) -> int:
    """One subscriber process: receive for --duration after --warmup, print one JSON line."""
    import threading

    from .client import Client

    p = argparse.ArgumentParser(prog="rgbdcast.bench sub")
    p.add_argument("endpoint")
    p.add_argument("--streams", default="depth")
    p.add_argument("--duration", type=float, default=10.0)
    p.add_argument("--warmup", type=float, default=2.0)
    p.add_argument("--client", choices=["rgbdcast", "pyzmq"], default="rgbdcast")
    p.add_argument("--no-decode", action="store_true")
    p.add_argument("--slow", action="store_true")
    args = p.parse_args(argv)
    if args.client == "pyzmq":
        return _plain_sub(args)
    me = psutil.Process()
    with Client(args.endpoint, reconnect=False) as client:
        subs = [
            client.subscribe(dev, kind, decode=not args.no_decode)
            for dev in client.devices
            for kind in args.streams.split(",")
        ]
        t_start = time.monotonic()
        warm, end = t_start + args.warmup, t_start + args.warmup + args.duration
        results: list[dict[str, Any]] = [{} for _ in subs]
        threads = [
            threading.Thread(target=_consume, args=(s, warm, end, r, args.slow), daemon=True)
            for s, r in zip(subs, results, strict=False)
        ]
        for t in threads:
            t.start()
        time.sleep(max(0.0, warm - time.monotonic()))
        c0 = me.cpu_times()
        bytes0 = [s.stats.bytes for s in subs]
        for t in threads:
            t.join()
        c1 = me.cpu_times()
        span = args.duration
        out: dict[str, Any] = {
            "cpu_percent": (c1.user + c1.system - c0.user - c0.system) / span * 100,
            "slow": args.slow,
            "decoded": all(s.decode for s in subs),
            "streams": {},
        }
        for s, r, b0 in zip(subs, results, bytes0, strict=False):
            out["streams"][f"{s.device_id}/{s.kind.value}"] = {
                "frames": r["frames"],
                "fps": r["frames"] / span,
                "dropped": r["dropped"],
                "mbit_s": (s.stats.bytes - b0) * 8 / span / 1e6,
                "latencies_ms": r["latencies_ms"],
            }
    print(json.dumps(out), flush=True)
    return 0


def _plain_sub(args: argparse.Namespace) -> int:
    """The ceiling: a bare pyzmq SUB socket per stream, header parsed, payload as numpy, no
    threads, no checks. Same figures as the rgbdcast subscriber."""
    import json as _json

    import numpy as np
    import zmq

    from .net.sockets import SUB_HWM

    me = psutil.Process()
    ctx = zmq.Context()
    req = ctx.socket(zmq.REQ)
    req.setsockopt(zmq.LINGER, 0)
    req.connect(args.endpoint)
    req.send(b"\x03")
    info = _json.loads(req.recv_multipart()[1])
    req.close()
    poller = zmq.Poller()
    socks: dict[Any, dict[str, Any]] = {}
    for dev in info["devices"]:
        for kind in args.streams.split(","):
            s = ctx.socket(zmq.SUB)
            s.setsockopt(zmq.LINGER, 0)
            s.setsockopt(zmq.RCVHWM, SUB_HWM)
            s.setsockopt(zmq.SUBSCRIBE, b"")
            s.connect(dev["endpoints"][kind])
            poller.register(s, zmq.POLLIN)
            socks[s] = {
                "name": f"{dev['id']}/{kind}",
                "lat": [],
                "frames": 0,
                "dropped": 0,
                "bytes": 0,
                "last": None,
            }
    t0 = time.monotonic()
    warm, end = t0 + args.warmup, t0 + args.warmup + args.duration
    c0 = None
    while time.monotonic() < end:
        if c0 is None and time.monotonic() >= warm:
            c0 = me.cpu_times()
        for s, _ in poller.poll(100):
            header, payload = s.recv_multipart(copy=False)
            now = time.time_ns()
            h = _json.loads(bytes(header.buffer[5:]))
            if h["codec"] == "raw":
                np.frombuffer(payload.buffer, h["dtype"]).reshape(h["shape"])
            st = socks[s]
            if time.monotonic() < warm:
                st["last"] = h["seq"]
                continue
            st["frames"] += 1
            st["bytes"] += len(header.buffer) + len(payload.buffer)
            st["lat"].append((now - h["t_host"]) / 1e6)
            if st["last"] is not None and h["seq"] > st["last"] + 1:
                st["dropped"] += h["seq"] - st["last"] - 1
            st["last"] = h["seq"]
    c1 = me.cpu_times()
    span = args.duration
    assert c0 is not None
    out: dict[str, Any] = {
        "cpu_percent": (c1.user + c1.system - c0.user - c0.system) / span * 100,
        "streams": {
            st["name"]: {
                "frames": st["frames"],
                "fps": st["frames"] / span,
                "dropped": st["dropped"],
                "mbit_s": st["bytes"] * 8 / span / 1e6,
                "latencies_ms": st["lat"],
            }
            for st in socks.values()
        },
    }
    for s in socks:
        s.close(0)
    ctx.term()
    print(json.dumps(out), flush=True)
    return 0


def machine_description() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        text = Path("/proc/cpuinfo").read_text()
        m = re.search(r"model name\s*:\s*(.+)", text)
        if m:
            cpu = m.group(1).strip()
    except OSError:
        pass
    import zmq

    mem = psutil.virtual_memory().total / 2**30
    return (
        f"{cpu}, {psutil.cpu_count()} cores, {mem:.0f} GiB; {platform.system()} "
        f"{platform.release()}; Python {platform.python_version()}; pyzmq {zmq.__version__} "
        f"(libzmq {zmq.zmq_version()})"
    )


def section_head(heading: str) -> list[str]:
    """The first lines of every BENCHMARKS.md section: the heading, the machine and date, and
    the exact command that produced it."""
    return [
        heading,
        "",
        f"Measured {time.strftime('%Y-%m-%d')} on: {machine_description()}.",
        "",
        f"Command: `{_command_line()}`",
        "",
    ]


def write_section(path: str | Path, key: str, body: str) -> None:
    """Replace (or append) the section marked ``<!-- bench:KEY -->`` in *path*."""
    file = Path(path)
    text = file.read_text() if file.exists() else "# Benchmarks\n"
    begin, end = f"<!-- bench:{key} -->", f"<!-- /bench:{key} -->"
    block = f"{begin}\n{body.rstrip()}\n{end}"
    if begin in text and end in text:
        text = text[: text.index(begin)] + block + text[text.index(end) + len(end) :]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    file.write_text(text)


def _print_run(r: dict[str, Any]) -> None:
    for name, st in r["streams"].items():
        print(
            f"  [{r['client']}] {name}: fps {st['fps_mean']:.1f} (min {st['fps_min']:.1f}), "
            f"latency p50 {st['latency_p50_ms']:.2f} ms p99 {st['latency_p99_ms']:.2f} ms, "
            f"dropped {st['dropped']}, {st['mbit_s_each']:.1f} Mbit/s each",
            flush=True,
        )
    print(
        f"  [{r['client']}] server CPU {r['server_cpu_percent']:.1f}% of one core (the source "
        f"{r['source_cpu_percent']:.1f}% of it), RSS "
        f"{r['server_rss_mb']:.0f} MB; subscriber CPU "
        f"{', '.join(f'{c:.0f}%' for c in r['subscriber_cpu_percent'])}",
        flush=True,
    )
    print(f"  [{r['client']}] server CPU by thread: {format_cpu_by_thread(r['server_threads'])}")


def _data_dir(arg: str | None) -> Path | None:
    for cand in (arg, os.environ.get("RGBDCAST_DATA"), "../shared/data/depth"):
        if cand and Path(cand).is_dir() and any(Path(cand).glob("*.npy")):
            return Path(cand)
    if arg:
        raise UsageError(f"no .npy depth frames in {arg}")
    return None


def _command_line() -> str:
    cmd = "rgbdcast bench"
    if sys.argv[1:2] == ["bench"]:
        cmd += " " + " ".join(sys.argv[2:])
    return cmd.strip()


def cmd_codecs(args: argparse.Namespace) -> None:
    import numpy as np

    from .bench_codecs import codec_rows, color_rows, format_tables
    from .devices.mock import MockDevice

    data = _data_dir(args.data)
    if data is None:
        print("codec table skipped: no real depth frames (give --data DIR)", flush=True)
        return
    print(f"codec table on the frames in {data} ...", flush=True)
    sets = {
        "Depth, time-of-flight (Azure Kinect, 6 frames)": sorted(data.glob("azurekinect_*.npy")),
        "Depth, structured light (Kinect v1, TUM)": sorted(data.glob("kinect1_*depth*.npy")),
    }
    tables = {title: codec_rows(files) for title, files in sets.items() if files}
    images = {
        "mock 1920x1080": next(
            f.array for f in MockDevice("m").render(5) if f.kind.value == "color"
        )
    }
    real = data / "kinect1_tum_color.npy"
    if real.exists():
        images["Kinect v1 640x480 (TUM, real)"] = np.load(real)
    text = format_tables(tables, color_rows(images))
    print(text, flush=True)
    if args.write:
        from .codecs.grad import native_available

        body = "\n".join(
            [
                *section_head("## Codecs"),
                "Ratio is raw bytes over encoded bytes, summed over the set. Depth times: three "
                "rounds each time every codec and anchor (the median of 20 runs per frame, one "
                "thread), and each row shows its best round, so that all rows meet the machine "
                "in the same state (this host's speed drifts by tens of percent from minute to "
                "minute); scaled by pixel count to one 512x424 Kinect v2 frame. Color times: the "
                "median of 10 runs. 'offered' codecs can be chosen with `serve --depth-codec` / "
                "`--infrared-codec`; 'anchor' rows are what users would otherwise use, measured "
                "here by the same harness. C accelerator built: "
                f"{'yes' if native_available() else 'no (numpy fallback)'}.",
                "",
                text,
            ]
        )
        write_section(args.write, "codecs", body)


def cmd_bench(args: argparse.Namespace) -> int:
    if args.soak is not None:
        if args.soak < 10:
            raise UsageError("--soak needs at least 10 seconds")
        from .bench_soak import cmd_soak

        cmd_soak(args)
        if args.write:
            print(f"written to {args.write}")
        return 0
    if args.suite in ("all", "codecs"):
        cmd_codecs(args)
    if args.suite in ("all", "e2e"):
        from .bench_e2e import cmd_e2e

        cmd_e2e(args)
    if args.suite in ("all", "peers"):
        from .bench_peers_suite import cmd_peers

        cmd_peers(args)
    if args.suite in ("all", "gateway"):
        cmd_gateway(args)
    if args.suite in ("all", "web"):
        from .bench_web import cmd_web

        cmd_web(args)
    if args.suite in ("all", "zenoh"):
        from .bench_zenoh import cmd_zenoh

        cmd_zenoh(args)
    if args.write:
        print(f"written to {args.write}")
    return 0


def cmd_gateway(args: argparse.Namespace) -> None:
    from .bench_peers import run_peer

    rows = [
        "| payload | source | path | frames/s received | latency p50 | latency p99 |",
        "|---|---|---|---:|---:|---:|",
    ]
    names = {"depth": "raw depth 512x424", "color": "raw color 1920x1080 BGR"}
    for payload in ("depth", "color"):
        for fps, label in ((30, "30 fps camera"), (4000, "saturated (4000 fps source)")):
            for transport, path in (
                ("rgbdcast", "ZeroMQ `Client`"),
                ("gateway", "TCP gateway, `GET ... raw`"),
            ):
                print(f"{payload} at {label} via {path} ...", flush=True)
                r = run_peer(transport, payload, duration=args.duration / 2, warmup=1.0, fps=fps)
                print(
                    f"  {r['fps']:.0f} frames/s, p50 {r['p50']:.2f} ms p99 {r['p99']:.2f} ms",
                    flush=True,
                )
                rows.append(
                    f"| {names[payload]} | {label} | {path} | {r['fps']:.0f} | "
                    f"{r['p50']:.2f} ms | {r['p99']:.2f} ms |"
                )
    if not args.write:
        return
    body = "\n".join(
        [
            *section_head("## Plain-TCP gateway next to the ZeroMQ path"),
            "One server process (`serve --tcp-gateway`, mock frames pre-rendered, raw codecs) and "
            "one receiver process: either an rgbdcast `Client` subscription or a gateway client "
            "looping `GET mock0 <stream> raw` (request, then wait for the reply). Latency is "
            "capture to the frame in the receiver's hands.",
            "",
            *rows,
        ]
    )
    write_section(args.write, "gateway", body)


if __name__ == "__main__":
    if sys.argv[1:2] == ["sub"]:
        sys.exit(_sub_main(sys.argv[2:]))
    print("usage: python -m rgbdcast.bench sub ENDPOINT [...]", file=sys.stderr)
    sys.exit(2)
