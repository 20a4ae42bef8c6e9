"""``rgbdcast bench --suite foxglove``: what live Foxglove viewing costs a server.

Each run is one server process (pre-rendered mock, all four streams at 30 fps) with eight
non-decoding rgbdcast subscriber processes, in four configurations: without the Foxglove outlet;
with it and no Foxglove client; with one Foxglove client on every topic; and with that client
plus one that subscribes to everything and never reads again. The Foxglove clients are
processes of their own (:mod:`.fgclient`, written from the WebSocket protocol's spec); the one
that reads counts messages per topic and checks that every color image it compares is byte for
byte the JPEG the ZeroMQ stream carried at the same capture time. The figures: the subscribers'
fps and drops, the Foxglove client's fps per topic, the server's CPU by thread and its memory.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from typing import Any

from .e2erun import run_e2e
from .harness import format_cpu_by_thread, free_port, section_head, write_section

__all__ = ["cmd_foxglove"]

STREAMS = "color,depth,infrared,body"
SUBSCRIBERS = 8
TOPICS = 9
"""A mock's topics: four streams, three calibrations, points, /tf."""
OUTLET_THREADS = ("fox-", "tokio-rt-worker")
"""The outlet's threads: a converter per topic group (``fox-color``, ..., ``fox-points``) and
the Foxglove SDK's runtime (tokio; no other Rust runtime runs in these servers)."""


def _run(label: str, args: argparse.Namespace, foxglove: bool, readers: int, stalled: int) -> Any:
    port, fox_port = free_port(), free_port()
    client = [sys.executable, "-m", "rgbdcast.bench.fgclient", f"ws://127.0.0.1:{fox_port}"]
    reader = [*client, "--endpoint", f"tcp://127.0.0.1:{port}", "--topics", str(TOPICS)]
    side = [reader] * readers + [[*client, "--stall", "--topics", str(TOPICS)]] * stalled
    print(f"foxglove suite: {label} ...", flush=True)
    r = run_e2e(
        SUBSCRIBERS,
        STREAMS,
        args.fps,
        args.duration,
        args.warmup,
        port=port,
        no_decode=True,
        serve_args=["--foxglove", f"127.0.0.1:{fox_port}"] if foxglove else [],
        side=side,
    )
    r["label"] = label
    worst = min(st["fps_min"] for st in r["streams"].values())
    drops = sum(st["dropped"] for st in r["streams"].values())
    outlet = _outlet_cpu(r["server_threads"])
    print(
        f"  subscribers: worst {worst:.1f} fps, {drops} dropped; server CPU "
        f"{r['server_cpu_percent']:.0f}% (outlet threads {outlet:.0f}%), RSS max "
        f"{r['server_rss_mb']:.0f} MB",
        flush=True,
    )
    for s in r["side"]:
        if "fps" in s:
            fps = ", ".join(f"{t} {v:.1f}" for t, v in s["fps"].items())
            print(f"  Foxglove client fps: {fps}", flush=True)
            print(f"  color bytes equal: {s['color_equal']} of {s['color_compared']}", flush=True)
    print(f"  server CPU by thread: {format_cpu_by_thread(r['server_threads'])}", flush=True)
    return r


def _outlet_cpu(threads: dict[str, float]) -> float:
    return sum(v for n, v in threads.items() if n.startswith(OUTLET_THREADS))


def _rss_trend(r: dict[str, Any]) -> str:
    samples = r["server_rss_samples_mb"]
    half = max(1, len(samples) // 2)
    first, last = statistics.median(samples[:half]), statistics.median(samples[half:])
    return f"{first:.0f} -> {last:.0f} MB"


def cmd_foxglove(args: argparse.Namespace) -> None:
    runs = [
        _run("8 subscribers, no Foxglove outlet", args, False, 0, 0),
        _run("8 subscribers, Foxglove outlet, no client", args, True, 0, 0),
        _run("8 subscribers + 1 Foxglove client on every topic", args, True, 1, 0),
        _run("8 subscribers + 1 Foxglove client + 1 that stops reading", args, True, 1, 1),
    ]
    base = runs[0]["server_cpu_percent"]
    rows = [
        "| configuration | subscribers' fps, worst stream (mean / min) | dropped | server CPU "
        "| extra CPU | outlet threads | server RSS (max; first -> second half) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in runs:
        worst = min(r["streams"].values(), key=lambda st: st["fps_min"])
        drops = sum(st["dropped"] for st in r["streams"].values())
        rows.append(
            f"| {r['label']} | {worst['fps_mean']:.1f} / {worst['fps_min']:.1f} | {drops} | "
            f"{r['server_cpu_percent']:.0f}% | {r['server_cpu_percent'] - base:+.0f}% | "
            f"{_outlet_cpu(r['server_threads']):.0f}% | {r['server_rss_mb']:.0f} MB; "
            f"{_rss_trend(r)} |"
        )
    topic_rows = ["| topic | fps, reader alone | fps, beside a stalled client |", "|---|---:|---:|"]
    alone, beside = (next(s for s in r["side"] if "fps" in s) for r in runs[2:])
    for topic in sorted(set(alone["fps"]) | set(beside["fps"])):
        topic_rows.append(
            f"| `{topic}` | {alone['fps'].get(topic, 0.0):.1f} | "
            f"{beside['fps'].get(topic, 0.0):.1f} |"
        )
    threads = [f"- {r['label']}: {format_cpu_by_thread(r['server_threads'])}" for r in runs[1:]]
    equal = sum(s["color_equal"] for r in runs[2:] for s in r["side"] if "fps" in s)
    compared = sum(s["color_compared"] for r in runs[2:] for s in r["side"] if "fps" in s)
    if not args.write:
        return
    body = "\n".join(
        [
            *section_head("## Foxglove live viewing beside ZeroMQ subscribers"),
            "One server process (mock pre-rendered, all four streams at 30 fps, color 1920x1080 "
            "JPEG), eight non-decoding `Client` subscriber processes, and Foxglove clients as "
            "processes of their own (`rgbdcast.bench.fgclient`, written from the WebSocket "
            "protocol's spec): one subscribed to every topic of the device (color, depth, "
            "infrared, bodies, points at every second pixel, three calibrations, /tf), and in "
            "the last row one more that subscribes to everything and never reads again. CPU is "
            "percent of one core; extra CPU is against the first row.",
            "",
            *rows,
            "",
            "What the Foxglove client received per topic:",
            "",
            *topic_rows,
            "",
            f"Color without re-encoding: {equal} of {compared} color images compared were byte "
            "for byte the JPEG the ZeroMQ stream carried at the same capture time.",
            "",
            "Where the server's CPU went (`fox-*`: the outlet's converters; `tokio-rt-worker`: "
            "the Foxglove SDK's WebSocket server):",
            "",
            *threads,
        ]
    )
    write_section(args.write, "foxglove", body)
