"""``rgbdcast bench --suite gateway``: the plain-TCP gateway next to the ZeroMQ path, raw depth and
color from a camera-paced and a saturated source."""

from __future__ import annotations

import argparse

from .harness import section_head, write_section
from .peerrun import run_peer

__all__ = ["cmd_gateway"]


def cmd_gateway(args: argparse.Namespace) -> None:
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
