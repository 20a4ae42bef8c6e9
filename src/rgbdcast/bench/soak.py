"""``rgbdcast bench --soak SECONDS``: every stream to 8 subscribers for a long time.

One server process (``serve --checksums``: every header carries the CRC-32 of its payload;
all four mock streams, pre-rendered) and 8 subscriber processes taking frames without
decoding and checking every payload against its CRC; 2 of them disconnect and reconnect every
20 s. Every 5 s the server's resident memory and thread count are sampled. The report: frames,
corrupted frames (must be 0), frames lost by cause (sequence gaps seen by subscribers, the
server's publisher dropping a frame it had no time to encode, reconnect gaps), memory growth
after warm-up and the thread count over time.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Sequence
from typing import Any

import psutil

from .harness import free_port, section_head, stop_processes, write_section

__all__ = ["cmd_soak", "sub_main"]

SUBSCRIBERS = 8
RECONNECTING = 2
RECONNECT_EVERY_S = 20.0
SAMPLE_EVERY_S = 5.0
_SERVE = [sys.executable, "-m", "rgbdcast", "serve", "--bind", "127.0.0.1", "--no-announce"]
_SERVE += ["--no-web", "--quiet", "--prerender", "10", "--checksums"]


def sub_main(argv: Sequence[str]) -> int:
    from ..client import Client

    p = argparse.ArgumentParser(prog="rgbdcast.bench.soak sub")
    p.add_argument("endpoint")
    p.add_argument("--duration", type=float, required=True)
    p.add_argument("--reconnect", action="store_true")
    a = p.parse_args(argv)
    end = time.monotonic() + a.duration
    totals = {"frames": 0, "corrupted": 0, "gaps": 0, "reconnects": 0, "bytes": 0}
    lock = threading.Lock()

    def consume(sub: Any, until: float) -> None:
        last = None
        while time.monotonic() < until:
            try:
                enc = sub.get(timeout=0.5)
            except TimeoutError:
                continue
            crc = json.loads(enc.raw_header[5:]).get("crc")
            ok = crc is not None and zlib.crc32(enc.payload) == crc
            with lock:
                totals["frames"] += 1
                totals["bytes"] += enc.nbytes
                totals["corrupted"] += 0 if ok else 1
                if last is not None and enc.seq > last + 1:
                    totals["gaps"] += enc.seq - last - 1
            last = enc.seq

    while time.monotonic() < end:
        until = min(end, time.monotonic() + (RECONNECT_EVERY_S if a.reconnect else a.duration))
        with Client(a.endpoint) as client:
            subs = [
                client.subscribe(dev, kind, decode=False, queue_size=4)
                for dev, rec in client.devices.items()
                for kind in rec.streams
            ]
            threads = [threading.Thread(target=consume, args=(s, until)) for s in subs]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        if a.reconnect and time.monotonic() < end:
            totals["reconnects"] += 1
    print(json.dumps(totals), flush=True)
    return 0


def cmd_soak(args: argparse.Namespace) -> None:
    seconds = float(args.soak)
    port = free_port()
    endpoint = f"tcp://127.0.0.1:{port}"
    server = subprocess.Popen(
        [*_SERVE, "--port", str(port), "--duration", str(seconds + 60)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    subs: list[subprocess.Popen[str]] = []
    try:
        assert server.stdout is not None
        if "serving" not in server.stdout.readline():
            err = server.stderr.read() if server.stderr else ""
            raise RuntimeError(f"soak server did not start: {err[-300:]}")
        proc = psutil.Process(server.pid)
        subs = [
            subprocess.Popen(
                [sys.executable, "-m", "rgbdcast.bench.soak", "sub", endpoint]
                + ["--duration", str(seconds)]
                + (["--reconnect"] if i < RECONNECTING else []),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for i in range(SUBSCRIBERS)
        ]
        samples: list[tuple[float, float, int]] = []
        t0 = time.monotonic()
        print(f"soak: {seconds:g} s, all streams to {SUBSCRIBERS} subscribers ...", flush=True)
        while time.monotonic() - t0 < seconds:
            time.sleep(SAMPLE_EVERY_S)
            t = time.monotonic() - t0
            samples.append((t, proc.memory_info().rss / 1e6, proc.num_threads()))
            print(
                f"  {t:6.0f} s  RSS {samples[-1][1]:6.1f} MB  threads {samples[-1][2]}", flush=True
            )
        results = []
        for p in subs:
            out, err = p.communicate(timeout=120)
            lines = [ln for ln in out.splitlines() if ln.startswith("{")]
            if not lines:
                raise RuntimeError(f"soak subscriber failed: {err[-300:]}")
            results.append(json.loads(lines[-1]))
        from ..client import Client

        with Client(endpoint) as c:
            stats = c.server_stats(timeout=5)
    finally:
        stop_processes([*subs, server])
    warm = [s for s in samples if s[0] >= min(60.0, seconds / 4)] or samples
    rss0, rss1 = warm[0][1], samples[-1][1]
    growth = (rss1 - rss0) / rss0 * 100
    threads = sorted({s[2] for s in samples})
    frames = sum(r["frames"] for r in results)
    corrupted = sum(r["corrupted"] for r in results)
    gaps_steady = sum(r["gaps"] for i, r in enumerate(results) if i >= RECONNECTING)
    gaps_reconnecting = sum(r["gaps"] for i, r in enumerate(results) if i < RECONNECTING)
    reconnects = sum(r["reconnects"] for r in results)
    busy = sum(s["dropped_busy"] for s in stats["streams"].values())
    print(
        f"soak done: {frames} frames, {corrupted} corrupted, gaps {gaps_steady} (steady "
        f"subscribers) + {gaps_reconnecting} (reconnecting ones, {reconnects} reconnects), "
        f"{busy} dropped by the busy encoder; RSS {rss0:.1f} -> {rss1:.1f} MB ({growth:+.1f}%), "
        f"threads {threads}",
        flush=True,
    )
    if not args.write:
        return
    timeline = " ".join(
        f"{t:.0f}s:{r:.0f}MB/{n}" for t, r, n in samples[:: max(1, len(samples) // 12)]
    )
    body = "\n".join(
        [
            *section_head(
                f"## Soak: {seconds / 60:g} minutes, every stream to {SUBSCRIBERS} subscribers"
            ),
            "One `rgbdcast serve --checksums` process (all four mock streams at 30 fps, color "
            "1080p JPEG, pre-rendered) and 8 subscriber processes taking every stream without "
            f"decoding and checking each payload's CRC-32; {RECONNECTING} of them disconnect "
            f"and reconnect every {RECONNECT_EVERY_S:g} s. Memory growth is from the first "
            "sample after warm-up to the last.",
            "",
            "| figure | value |",
            "|---|---:|",
            f"| frames received (all subscribers) | {frames} |",
            f"| corrupted frames (CRC mismatch) | {corrupted} |",
            f"| lost, steady subscribers (sequence gaps) | {gaps_steady} |",
            f"| lost, reconnecting subscribers (gaps while connected) | {gaps_reconnecting} |",
            f"| reconnects | {reconnects} |",
            f"| dropped by the server's busy encoder | {busy} |",
            f"| server RSS after warm-up -> end | {rss0:.1f} -> {rss1:.1f} MB ({growth:+.1f}%) |",
            f"| server threads over the run | {', '.join(map(str, threads))} |",
            "",
            f"Timeline (time: RSS / threads): {timeline}",
        ]
    )
    write_section(args.write, "soak", body)


if __name__ == "__main__":
    if sys.argv[1:2] == ["sub"]:
        sys.exit(sub_main(sys.argv[2:]))
    print("usage: python -m rgbdcast.bench.soak sub ENDPOINT --duration S", file=sys.stderr)
    sys.exit(2)
