"""``rgbdcast bench --suite web``: what browsers watching cost the server and its subscribers.

Each run is one server process (pre-rendered mock, color JPEG and depth) with two decoding
rgbdcast subscriber processes, and 0, 1 or 4 viewer processes on the web viewer's WebSocket
that behave like a fast page (ack every frame at once). The figures: the subscribers' fps and
latency, the server's CPU, and the frames per second each viewer got.
"""

from __future__ import annotations

import argparse
import json
import struct
import sys
import time
from collections import Counter
from collections.abc import Sequence

__all__ = ["cmd_web", "viewer_main"]

VIEWER_COUNTS = (0, 1, 4)


def viewer_main(argv: Sequence[str]) -> int:
    """One viewer process: receive for --duration after --warmup, print one JSON line."""
    from websockets.sync.client import connect

    p = argparse.ArgumentParser(prog="rgbdcast.bench viewer")
    p.add_argument("url")
    p.add_argument("--duration", type=float, default=10.0)
    p.add_argument("--warmup", type=float, default=2.0)
    args = p.parse_args(argv)
    counts: Counter[str] = Counter()
    nbytes = 0
    deadline = time.monotonic() + 20.0
    while True:  # the server may still be starting
        try:
            ws = connect(args.url, max_size=None, open_timeout=5)
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    with ws:
        start = time.monotonic() + args.warmup
        end = start + args.duration
        while (now := time.monotonic()) < end:
            try:
                msg = ws.recv(timeout=end - now)
            except TimeoutError:
                break
            if isinstance(msg, str):
                continue
            (n,) = struct.unpack_from(">I", msg)
            head = json.loads(msg[4 : 4 + n])
            key = f"{head['device']}/{head['stream']}"
            ws.send(json.dumps({"type": "ack", "key": key}))
            if now >= start:
                counts[key] += 1
                nbytes += len(msg)
    fps = {k.split("/")[-1]: v / args.duration for k, v in counts.items()}
    print(json.dumps({"fps": fps, "mbit_s": nbytes * 8 / 1e6 / args.duration}), flush=True)
    return 0


def cmd_web(args: argparse.Namespace) -> None:
    from .bench import _free_port, run_e2e, section_head, write_section

    rows = [
        "| viewers | stream | subscriber fps (mean / min) | subscriber p50 | subscriber p99 "
        "| server CPU | frames/s each viewer got | Mbit/s to each viewer |",
        "|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for viewers in VIEWER_COUNTS:
        print(f"web suite: 2 subscribers, {viewers} viewer(s), color+depth ...", flush=True)
        web_port = _free_port()
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


if __name__ == "__main__":
    if sys.argv[1:2] == ["viewer"]:
        sys.exit(viewer_main(sys.argv[2:]))
    print("usage: python -m rgbdcast.bench_web viewer URL [...]", file=sys.stderr)
    sys.exit(2)
