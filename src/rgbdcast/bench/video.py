"""``rgbdcast bench --suite video``: what video color and the bounded-error codecs save, and what
they cost.

Three parts, all on this machine in one run:

1. **Quality and size** in-process, on the same 1080p mock frames: JPEG q85 (the default and the
   anchor), H.264 and HEVC at their default settings; PSNR against the source, Mbit/s
   at 30 fps, encode and decode time per frame (the decode time is what a video subscriber pays
   for every unit, shown or not).
2. **End to end**: a served pre-rendered mock and one decoding subscriber process, as
   ``--suite e2e`` runs them: color alone as JPEG and as H.264 (latency capture to decoded, CPU
   at both ends), then all four streams with today's defaults and with the bandwidth sets
   (H.264, ``qdepth``, and ``qir`` or H.264 infrared): Mbit/s per stream as received.
3. **Recovery**: against a served H.264 stream, the time from a keyframe request to the first
   decoded picture, and from a late join (SUB connect) to the first decoded picture; p50/p99.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import numpy as np
import zmq

from ..codecs import get
from ..codecs.video import VideoDecoder
from ..protocol.control import MessageType, make_msg
from ..protocol.envelope import parse_header
from ..testing import psnr
from .e2erun import run_e2e
from .harness import pct, section_head, serve_process, stop_processes, write_section

__all__ = ["cmd_video"]

FRAMES = 60
RECOVERIES = 30
BANDWIDTH_SET = ["--color-codec", "h264", "--depth-codec", "qdepth", "--infrared-codec", "qir"]
VIEWING_SET = ["--color-codec", "h264", "--depth-codec", "qdepth", "--infrared-codec", "h264"]


def _quality() -> list[dict[str, Any]]:
    from ..devices.mock import MockDevice

    dev = MockDevice("q", streams=["color"])
    images = [dev.render(i)[0].array for i in range(FRAMES)]
    rows = []
    jpeg = get("jpeg")
    t_enc = t_dec = 0.0
    size = 0
    scores = []
    for img in images:
        t0 = time.perf_counter()
        payload = jpeg.encode(img, {"quality": 85})
        t1 = time.perf_counter()
        out = np.asarray(jpeg.decode(payload, (*img.shape[:2], 3), "|u1"))
        t_dec += time.perf_counter() - t1
        t_enc += t1 - t0
        size += len(memoryview(payload))
        scores.append(psnr(out, img))
    rows.append(_row("jpeg q85", size, t_enc, t_dec, scores))
    for name in ("h264", "hevc"):
        enc = get(name).stream_encoder({"encoder": "x264"})  # type: ignore[attr-defined]
        dec = VideoDecoder(name)
        t_enc = t_dec = 0.0
        size = 0
        scores = []
        for i, img in enumerate(images):
            t0 = time.perf_counter()
            unit, key = enc.encode(img)
            t1 = time.perf_counter()
            out = dec.feed(unit, i, key, (*img.shape[:2], 3))
            t_dec += time.perf_counter() - t1
            t_enc += t1 - t0
            size += len(unit)
            scores.append(psnr(out, img))
        rows.append(_row(f"{name} ({enc.encoder_name}, defaults)", size, t_enc, t_dec, scores))
        print(f"video suite: {rows[-1]}", flush=True)
    return rows


def _row(label: str, size: int, t_enc: float, t_dec: float, scores: list[float]) -> dict[str, Any]:
    return {
        "label": label,
        "mbit_s": size * 8 * 30 / FRAMES / 1e6,
        "encode_ms": t_enc / FRAMES * 1000,
        "decode_ms": t_dec / FRAMES * 1000,
        "psnr_mean": float(np.mean(scores)),
        "psnr_min": float(np.min(scores)),
    }


def _e2e(label: str, args: argparse.Namespace, streams: str, extra: list[str]) -> dict[str, Any]:
    print(f"video suite: {label} ...", flush=True)
    r = run_e2e(1, streams, args.fps, args.duration, args.warmup, serve_args=extra)
    r["label"] = label
    for name, st in r["streams"].items():
        print(
            f"  {name}: {st['fps_mean']:.1f} fps, {st['mbit_s_each']:.1f} Mbit/s, p50 "
            f"{st['latency_p50_ms']:.1f} ms, p99 {st['latency_p99_ms']:.1f} ms",
            flush=True,
        )
    print(
        f"  server CPU {r['server_cpu_percent']:.0f}%, subscriber CPU "
        f"{r['subscriber_cpu_percent'][0]:.0f}%",
        flush=True,
    )
    return r


def _units(sock: zmq.Socket[Any], dec: VideoDecoder, until: float) -> float | None:
    """Read units into *dec* until a picture comes out; when it did (monotonic), or None."""
    while time.monotonic() < until:
        if not sock.poll(100):
            continue
        head, payload = sock.recv_multipart()
        h = parse_header(head)
        if dec.feed(payload, h.au, h.key, h.shape) is not None:
            return time.monotonic()
    return None


def _recovery(fps: float) -> dict[str, list[float]]:
    proc, endpoint = serve_process("video-bench", "color", ["--color-codec", "h264"], fps)
    ctx: zmq.Context[Any] = zmq.Context.instance()
    req = ctx.socket(zmq.REQ)
    req.setsockopt(zmq.LINGER, 0)
    req.connect(endpoint)
    out: dict[str, list[float]] = {"request": [], "join": []}
    try:
        req.send_multipart(make_msg(MessageType.who))
        if not req.poll(10_000):
            raise RuntimeError("the bench server did not answer")
        me = json.loads(req.recv_multipart()[1])
        color = me["devices"][0]["endpoints"]["color"]
        ask = make_msg(MessageType.keyframe, {"device": me["devices"][0]["id"], "stream": "color"})
        for i in range(RECOVERIES):
            sub = ctx.socket(zmq.SUB)
            sub.setsockopt(zmq.LINGER, 0)
            sub.setsockopt(zmq.SUBSCRIBE, b"")
            t0 = time.monotonic()
            sub.connect(color)
            dec = VideoDecoder("h264")
            t1 = _units(sub, dec, t0 + 5)
            if t1 is not None:
                out["join"].append((t1 - t0) * 1000)
            time.sleep(0.6)  # past the server's least interval between forced keyframes
            dec = VideoDecoder("h264")  # a broken chain: nothing until a keyframe
            t0 = time.monotonic()
            req.send_multipart(ask)
            t1 = _units(sub, dec, t0 + 5)
            if req.poll(5000):
                req.recv_multipart()
            if t1 is not None:
                out["request"].append((t1 - t0) * 1000)
            sub.close(0)
            time.sleep(0.6)
            if i % 10 == 9:
                print(f"video suite: recovery {i + 1}/{RECOVERIES}", flush=True)
    finally:
        req.close(0)
        stop_processes([proc])
    return out


def cmd_video(args: argparse.Namespace) -> None:
    quality = _quality()
    runs = [
        _e2e("color 1080p, JPEG q85", args, "color", []),
        _e2e("color 1080p, H.264 (x264, defaults)", args, "color", ["--color-codec", "h264"]),
        _e2e("all four streams, defaults", args, "color,depth,infrared,body", []),
        _e2e("all four, h264 + qdepth + qir", args, "color,depth,infrared,body", BANDWIDTH_SET),
        _e2e("all four, h264 + qdepth + h264", args, "color,depth,infrared,body", VIEWING_SET),
    ]
    rec = _recovery(args.fps)
    for k, v in rec.items():
        print(f"video suite: {k} -> picture p50 {pct(v, 0.5):.0f} ms, p99 {pct(v, 0.99):.0f} ms")
    if not args.write:
        return
    write_section(args.write, "video", "\n".join(_report(quality, runs, rec)))


def _report(
    quality: list[dict[str, Any]], runs: list[dict[str, Any]], rec: dict[str, list[float]]
) -> list[str]:
    q = [
        "| codec | Mbit/s at 30 fps | PSNR mean / min (dB) | encode ms | decode ms |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in quality:
        q.append(
            f"| {r['label']} | {r['mbit_s']:.1f} | {r['psnr_mean']:.2f} / {r['psnr_min']:.2f} | "
            f"{r['encode_ms']:.1f} | {r['decode_ms']:.1f} |"
        )
    lat = [
        "| run | color fps | color p50 / p99 (ms) | server CPU | subscriber CPU |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in runs[:2]:
        st = r["streams"]["mock0/color"]
        lat.append(
            f"| {r['label']} | {st['fps_mean']:.1f} | {st['latency_p50_ms']:.1f} / "
            f"{st['latency_p99_ms']:.1f} | {r['server_cpu_percent']:.0f}% | "
            f"{r['subscriber_cpu_percent'][0]:.0f}% |"
        )
    bw = [
        "| stream | defaults | h264 + qdepth + qir | h264 + qdepth + h264 infrared |",
        "|---|---:|---:|---:|",
    ]
    sets = [r["streams"] for r in runs[2:5]]
    for name in ("color", "depth", "infrared", "body"):
        cells = " | ".join(f"{st[f'mock0/{name}']['mbit_s_each']:.1f}" for st in sets)
        bw.append(f"| {name} | {cells} |")

    def total(names: tuple[str, ...]) -> str:
        return " | ".join(
            f"**{sum(st[f'mock0/{n}']['mbit_s_each'] for n in names):.1f}**" for st in sets
        )

    bw.append(f"| all four | {total(('color', 'depth', 'infrared', 'body'))} |")
    bw.append(f"| color + depth + body | {total(('color', 'depth', 'body'))} |")
    return [
        *section_head("## Video color and the bandwidth set"),
        "Quality and size on the same 60 frames of the mock's 1080p color, in-process (PSNR "
        "against the source; a video decoder decodes every unit, so its decode time is paid for "
        "every frame received, shown or not):",
        "",
        *q,
        "",
        "One server process (pre-rendered mock, 30 fps) and one decoding subscriber process; "
        "latency is capture to decoded on one host clock; CPU is percent of one core:",
        "",
        *lat,
        "",
        "Bandwidth in Mbit/s, all four streams to one decoding subscriber, as it received them: "
        "today's defaults (JPEG q85, grad-zstd, grad-zstd, body) against the bandwidth sets "
        "(`--color-codec h264 --depth-codec qdepth` and `--infrared-codec qir`, or `h264` for "
        "infrared to look at):",
        "",
        *bw,
        "",
        f"Recovery against a served 1080p H.264 stream ({RECOVERIES} of each, 0.6 s apart): "
        f"keyframe request to first decoded picture p50 {pct(rec['request'], 0.5):.0f} ms, p99 "
        f"{pct(rec['request'], 0.99):.0f} ms ({len(rec['request'])} of {RECOVERIES}); late join "
        f"(SUB connect) to first decoded picture p50 {pct(rec['join'], 0.5):.0f} ms, p99 "
        f"{pct(rec['join'], 0.99):.0f} ms ({len(rec['join'])} of {RECOVERIES}).",
    ]
