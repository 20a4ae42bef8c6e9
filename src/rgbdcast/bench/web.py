"""``rgbdcast bench --suite web``: what browsers watching cost the server and its subscribers.

Each run is one server process (pre-rendered mock, color JPEG and depth) with two decoding
rgbdcast subscriber processes, and 0, 1 or 4 viewer processes on the web viewer's WebSocket
that behave like a fast page (ack every frame at once). The figures: the subscribers' fps and
latency, the server's CPU, and the frames per second each viewer got.
"""

from __future__ import annotations

import argparse

from .e2erun import run_e2e
from .harness import free_port, section_head, write_section

__all__ = ["cmd_web"]

VIEWER_COUNTS = (0, 1, 4)


def cmd_web(args: argparse.Namespace) -> None:
    rows = [
        "| viewers | stream | subscriber fps (mean / min) | subscriber p50 | subscriber p99 "
        "| server CPU | frames/s each viewer got | Mbit/s to each viewer |",
        "|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for viewers in VIEWER_COUNTS:
        print(f"web suite: 2 subscribers, {viewers} viewer(s), color+depth ...", flush=True)
        web_port = free_port()
        r = run_e2e(
            2,
            "color,depth",
            args.fps,
            args.duration,
            args.warmup,
            serve_args=["--web", f"127.0.0.1:{web_port}"],
            viewers=viewers,
            web_port=web_port,
        )
        for name, st in r["streams"].items():
            vfps = [v["fps"].get(name.split("/")[-1], 0.0) for v in r["viewers"]]
            vmbit = [v["mbit_s"] for v in r["viewers"]]
            got = f"{min(vfps):.1f} - {max(vfps):.1f}" if vfps else "-"
            mbit = f"{sum(vmbit) / len(vmbit):.1f} (all streams)" if vmbit else "-"
            print(
                f"  {name}: subscribers {st['fps_mean']:.1f} fps, p99 "
                f"{st['latency_p99_ms']:.1f} ms; viewers {got} fps; server CPU "
                f"{r['server_cpu_percent']:.0f}%",
                flush=True,
            )
            rows.append(
                f"| {viewers} | {name} | {st['fps_mean']:.1f} / {st['fps_min']:.1f} | "
                f"{st['latency_p50_ms']:.2f} ms | {st['latency_p99_ms']:.2f} ms | "
                f"{r['server_cpu_percent']:.0f}% | {got} | {mbit} |"
            )
    if not args.write:
        return
    body = "\n".join(
        [
            *section_head("## Web viewers beside ZeroMQ subscribers"),
            "One server process (mock pre-rendered, color 1920x1080 JPEG, depth grad-zstd), two "
            "decoding `Client` subscriber processes, and 0, 1 or 4 viewer processes on the web "
            "viewer's WebSocket acking every frame at once (a fast page; a real browser acks "
            "after drawing, so it takes fewer). Viewers get color as the stream's own JPEG and "
            "depth as RVL; CPU is percent of one core. On this 2-core machine the two "
            "subscribers decoding 1080p JPEG already load it heavily: compare rows within a "
            "run, not with other sections.",
            "",
            *rows,
        ]
    )
    write_section(args.write, "web", body)
