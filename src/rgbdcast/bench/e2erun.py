"""The end-to-end run the e2e and web suites measure: a served mock (or a replayed recording of
it) in its own process, and subscriber processes.

How this works: the server runs in its own process (``rgbdcast serve`` with a pre-rendered mock
device, so its CPU is the cost of serving and not of drawing frames); each subscriber is one more
process (``python -m rgbdcast.bench.receivers sub``) that receives and decodes frames for the
measured window and prints a JSON line with its counts, latency percentiles (capture to decoded,
one host clock) and CPU. The parent samples the server's CPU and memory over the same window.

``--source replay`` serves a recording instead of the pre-rendered mock: the bench first records
a few seconds of that mock (color as the server's JPEG, depth and infrared raw) and the server
replays it in a loop, so color is passed through as recorded rather than encoded on the server,
as with a camera that delivers MJPEG. Either way the device thread (the source: drawing, or
reading the file) is named ``src-<device>`` on Linux, and its CPU is kept apart from the cost of
serving.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil

from ..errors import UsageError
from .harness import CpuSpan, format_cpu_by_thread, free_port, pct, source_share, stop_processes

__all__ = ["PRERENDER", "describe_source", "print_run", "record_mock", "run_e2e", "serve_command"]

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
    side: list[list[str]] | None = None,
) -> dict[str, Any]:
    """One run: a server process and *subscribers* subscriber processes (and *viewers* web
    viewer processes on *web_port*, and the *side* commands, each given ``--warmup S
    --duration S`` and its last JSON line returned under ``side``). Returns the figures."""
    port = port or free_port()
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
            "rgbdcast.bench.receivers",
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
        viewer_cmd = [
            sys.executable,
            "-m",
            "rgbdcast.bench.receivers",
            "viewer",
            "--warmup",
            str(warmup),
        ]
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
        side_procs = [
            subprocess.Popen(
                [*cmd, "--warmup", str(warmup), "--duration", str(duration)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=env,
                text=True,
            )
            for cmd in side or []
        ]
        subs += viewer_procs + side_procs
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
            viewer_results.append(_last_json(p, duration + warmup + 60, "viewer"))
        side_results = [_last_json(p, duration + warmup + 60, "side process") for p in side_procs]
        for p in subs:
            if p in viewer_procs or p in side_procs:
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
        "side": side_results,
        "server_rss_samples_mb": [r / 1e6 for r in rss],
        "streams": {
            name: {
                "fps_min": min(a["fps"]),
                "fps_mean": sum(a["fps"]) / len(a["fps"]),
                "latency_p50_ms": pct(a["lat"], 0.5),
                "latency_p99_ms": pct(a["lat"], 0.99),
                "dropped": a["dropped"],
                "mbit_s_each": sum(a["mbit"]) / len(a["mbit"]),
            }
            for name, a in per_stream.items()
        },
    }


def _last_json(p: subprocess.Popen[str], timeout: float, what: str) -> dict[str, Any]:
    out, err = p.communicate(timeout=timeout)
    lines = [ln for ln in out.splitlines() if ln.startswith("{")]
    if not lines:
        raise UsageError(f"bench {what} failed: {err.strip()[-300:]}")
    return dict(json.loads(lines[-1]))


def print_run(r: dict[str, Any]) -> None:
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


RECORD = [sys.executable, "-m", "rgbdcast", "record"]


def record_mock(out: Path, serve: list[str], endpoint: str, seconds: float) -> Path:
    """Record *seconds* of the server that the ``serve`` command line starts on *endpoint*."""
    server = subprocess.Popen(serve, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        if "serving" not in line:
            raise UsageError(f"bench server did not start: {line.strip()}")
        done = subprocess.run(
            [*RECORD, endpoint, "--out", str(out), "--duration", str(seconds)],
            capture_output=True,
            text=True,
            timeout=seconds + 60,
        )
        if done.returncode != 0 or not out.exists():
            raise UsageError(f"recording the bench source failed: {done.stderr.strip()[-300:]}")
    finally:
        stop_processes([server])
    return out


def describe_source(info: dict[str, Any]) -> str:
    """One sentence for BENCHMARKS.md on what was served."""
    if info.get("replay"):
        what = (
            f"a {info['seconds']:g} s recording of the pre-rendered mock"
            if info["seconds"]
            else f"the recording `{Path(info['replay']).name}`"
        )
        return (
            f"The server is its own process replaying {what} in a loop "
            "(`serve --replay FILE --loop`): color goes out as "
            "the recorded JPEG (passed through, not encoded on the server, as from a camera "
            "delivering MJPEG), depth and infrared are encoded from the recorded raw frames."
        )
    layout = (
        " Its color frames are YUY2, as a Kinect v2's raw color frame is "
        "(`--mock-color-layout yuy2`), and are encoded from it with no BGR in between."
        if info.get("layout") == "yuy2"
        else ""
    )
    return (
        f"The server is its own process serving a mock device that pre-renders "
        f"{info['prerender']} framesets and loops them (its RSS includes that cache).{layout}"
    )
