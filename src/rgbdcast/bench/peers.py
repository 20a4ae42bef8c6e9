"""``rgbdcast bench --suite peers``: rgbdcast next to the tools users would otherwise pick, in
the same run, written to BENCHMARKS.md.

How this works: :mod:`rgbdcast.bench.peerrun` runs one sender and one receiver process per
transport and returns the receiver's figures; this module repeats those runs (alternating
transports so the host's noise falls on all alike), takes medians and each run's own ratio to
plain pyzmq, and writes two sections: 1080p JPEG at a camera's 30 fps, and saturated throughput
(with rgbdcast's own server counters, which say whether the source or the publisher set the pace).
"""

from __future__ import annotations

import argparse
import statistics
from typing import Any

from ..errors import UsageError
from .harness import format_cpu_by_thread, median_cpu_by_thread, section_head, write_section
from .peerrun import PACED_RUNS, PEER_RUNS, run_peer

__all__ = ["cmd_peers"]


def cmd_peers(args: argparse.Namespace) -> None:
    try:
        import imagezmq  # noqa: F401
        import vidgear  # noqa: F401
    except ImportError:
        raise UsageError(
            "the peers suite needs imagezmq and vidgear: pip install 'rgbdcast[bench]'"
        ) from None

    _paced_peers(args)
    results = []  # (run, label, payload, figures); each run measures every transport once
    for run in range(1, args.repeat + 1):
        for label, transport, payload in PEER_RUNS:
            print(f"run {run}/{args.repeat}, saturated {payload}: {label} ...", flush=True)
            r = run_peer(transport, payload, duration=args.duration / 2, warmup=1.0)
            results.append((run, label, payload, r))
            print(
                f"  {r['fps']:.0f} frames/s, latency p50 {r['p50']:.2f} ms p99 {r['p99']:.2f} ms",
                flush=True,
            )
            if "waited_share" in r:
                print(f"  {_publisher_line(r)}", flush=True)
    if not args.write:
        return
    names = {
        "depth": "raw depth 512x424 uint16",
        "color": "raw color 1920x1080 BGR",
        "jpeg": "color 1920x1080 as JPEG q85",
    }
    rows = [
        "| payload | transport | run | frames/s received | vs plain pyzmq | latency p50 | "
        "latency p99 | CPU sender / receiver | CPU per frame received |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    base = {(n, p): r["fps"] for n, label, p, r in results if label == "plain pyzmq PUB/SUB"}
    ratios: dict[tuple[str, str], list[float]] = {}
    for run, label, payload, r in results:
        ref = base.get((run, payload))
        if ref:
            ratios.setdefault((label, payload), []).append(r["fps"] / ref)
        ratio = f"{r['fps'] / ref:.2f}x" if ref else "-"
        rows.append(
            f"| {names[payload]} | {label} | {run} | {r['fps']:.0f} | {ratio} | "
            f"{r['p50']:.2f} ms | {r['p99']:.2f} ms | {_cpu_cells(_cpu_figures([r]))} |"
        )
    if args.repeat > 1:
        medians = [
            f"Medians over the {args.repeat} runs (the ratio is each run's own, then the median):",
            "",
            "| payload | transport | frames/s received | vs plain pyzmq | latency p50 | "
            "latency p99 | CPU sender / receiver | CPU per frame received |",
            "|---|---|---:|---:|---:|---:|---:|---:|",
        ]
        for label, _, payload in PEER_RUNS:
            rs = [r for _, lb, p, r in results if (lb, p) == (label, payload)]
            fps, p50, p99 = (statistics.median(r[k] for r in rs) for k in ("fps", "p50", "p99"))
            got = ratios.get((label, payload))
            ratio = f"{statistics.median(got):.2f}x" if got else "-"
            medians.append(
                f"| {names[payload]} | {label} | {fps:.0f} | {ratio} | {p50:.2f} ms | "
                f"{p99:.2f} ms | {_cpu_cells(_cpu_figures(rs))} |"
            )
        rows = [*medians, "", *rows]
    ours = {  # rgbdcast's runs of each payload
        payload: rs
        for payload in names
        if (rs := [r for _, lb, p, r in results if lb.startswith("rgbdcast") and p == payload])
    }
    pace = [
        f"- {names[payload]}: {_publisher_line(_median_figures(rs))}"
        for payload, rs in ours.items()
        if all("waited_share" in r for r in rs)
    ]
    pace += [
        f"- {names[payload]}, CPU by OS thread (medians, percent of one core): the server "
        f"{format_cpu_by_thread(median_cpu_by_thread([r['sender_threads'] for r in rs]))}; "
        "the receiver "
        f"{format_cpu_by_thread(median_cpu_by_thread([r['receiver_threads'] for r in rs]))}"
        for payload, rs in ours.items()
        if all("sender_threads" in r for r in rs)
    ]
    if pace:
        rows = [
            "Where rgbdcast's frames went over the measured spans (medians): the server's "
            "counters (the publisher's stream stats `frames_in`, `sent` and "
            "`waited_for_source`; ZeroMQ then drops, for a subscriber whose two-frame queue is "
            "full, what the network cannot carry), then the client's (frames its I/O thread "
            "received and checked, and those its newest-wins queue replaced before "
            "`Subscription.get()` took them; the table's frames/s is what `get()` returned), "
            "and where each process spent its CPU (`pub-<stream>-<device>` the publisher, "
            "`src-<device>` the mock, `zmq-io` ZeroMQ's I/O threads, `client-io` the client's "
            "I/O thread, `python` the receiver's main thread, which calls `get()`):",
            "",
            *pace,
            "",
            *rows,
        ]
    body = "\n".join(
        [
            *section_head("## Saturated: frames as fast as possible, next to the peers"),
            "One sender and one receiver process per transport, the same mock frames for all. "
            "Peers send as fast as their API allows; rgbdcast serves the mock device at 4000 fps "
            "(more than it can carry, so its latest-frame slot drops the rest) with frames "
            "pre-rendered. Latency is send (rgbdcast: capture) to receipt in user code; the "
            "receiver counts frames for half of `--duration` after a 1 s warm-up. imagezmq "
            "JPEG rows encode with simplejpeg (q85, 4:2:0, as rgbdcast) on the sender, stamped "
            "before encoding, and decode on the receiver, as its examples do; rgbdcast decodes "
            "too. CPU is each process's (the sender's and the receiver's), percent of one "
            "core, sampled for most of the measured span; per frame received it is both "
            "processes' CPU over the frames the receiver got, so a transport that sends frames "
            "nobody receives pays for them there. rgbdcast keeps at most two frames queued "
            "per subscriber (ZeroMQ high-water "
            "marks of 2) so that a subscriber always gets fresh frames, where plain PUB/SUB "
            "queues frames and latency grows. Its throughput here is bounded by thread "
            "wake-ups rather than by bytes: each frame wakes the mock's device thread (on its "
            "clock), the stream's publisher thread (so encoding never blocks capture) and, in "
            "the client, the socket's I/O thread and the reader in `Subscription.get()`, while "
            "the plain pyzmq sender never sleeps and its receiver finds frames already queued. "
            "One wake-up costs about 40 us on this VM (two Python threads passing a token: "
            "82 us a round trip). The server's own counters (below) show how often rgbdcast's "
            "publisher found no new frame waiting (the mock's clock set the pace) and how many "
            "frames its latest-frame slot replaced before the publisher took them (GIL and "
            "wake-up delays on the server). Two changes cut those replacements in paired ad-hoc "
            "runs with a bare SUB receiver (6 alternating rounds: the publisher handed ZeroMQ a "
            "median 3160 frames/s instead of 2905, and the slot replaced 650/s instead of "
            "1020): a mock that wakes more than half a period late runs late from there on "
            "instead of sending its next frame right after (the slot kept only the newer of "
            "such pairs), and payloads under 1 MiB are copied into ZeroMQ rather than lent, so "
            "that pyzmq's free-callback thread no longer wakes and takes the GIL for every "
            "frame. Sleeping with 1 us timer slack gave the publisher 7-24% more frames in "
            "paired runs; a mock that emits without sleeping starves the publisher of the GIL "
            "and halved throughput; raising the high-water marks to 4 or 8 changed nothing.",
            "",
            *rows,
        ]
    )
    write_section(args.write, "peers", body)


def _cpu_figures(rs: list[dict[str, Any]]) -> dict[str, float]:
    """Medians over runs of each process's CPU and of the CPU both spent per frame received;
    empty where a run has no CPU figures."""
    if not rs or not all("sender_cpu_percent" in r for r in rs):
        return {}

    def per_frame(r: dict[str, Any]) -> float:
        both = (r["sender_cpu_percent"] + r["receiver_cpu_percent"]) / 100
        return both / r["fps"] * 1e6 if r["fps"] > 0 else float("nan")

    return {
        "sender": statistics.median(r["sender_cpu_percent"] for r in rs),
        "receiver": statistics.median(r["receiver_cpu_percent"] for r in rs),
        "us_per_frame": statistics.median(per_frame(r) for r in rs),
    }


def _cpu_cells(f: dict[str, float]) -> str:
    if not f:
        return "- | -"
    return f"{f['sender']:.0f}% / {f['receiver']:.0f}% | {f['us_per_frame']:.0f} us"


def _publisher_line(r: dict[str, Any]) -> str:
    line = (
        f"the source offered {r['offered_fps']:.0f} frames/s, the publisher handed "
        f"{r['sent_fps']:.0f}/s to ZeroMQ and found no frame waiting on "
        f"{100 * r['waited_share']:.0f}% of its takes"
    )
    if "client_fps" in r:
        line += (
            f"; the client's I/O thread received {r['client_fps']:.0f}/s, of which its queue "
            f"dropped {r['queue_drop_fps']:.0f}/s before the reader asked"
        )
    return line


def _median_figures(rs: list[dict[str, Any]]) -> dict[str, float]:
    keys = ["offered_fps", "sent_fps", "waited_share"]
    if all("client_fps" in r for r in rs):
        keys += ["client_fps", "queue_drop_fps"]
    return {k: statistics.median(r[k] for r in rs) for k in keys}


def _paced_peers(args: argparse.Namespace) -> None:
    """1080p color JPEG at 30 fps to one decoding receiver: rgbdcast next to imagezmq."""

    rows = [
        "| transport | run | fps received | latency p50 | latency p99 | CPU sender / receiver "
        "| CPU per frame received |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    got: dict[str, list[dict[str, Any]]] = {label: [] for label, _, _ in PACED_RUNS}
    for run in range(1, args.repeat + 1):
        for label, transport, extra in PACED_RUNS:
            print(f"color JPEG at 30 fps, run {run}: {label} ...", flush=True)
            r = run_peer(
                transport, "jpeg", duration=args.duration, warmup=2.0, pace=30, serve_extra=extra
            )
            print(
                f"  {r['fps']:.1f} fps, latency p50 {r['p50']:.2f} ms p99 {r['p99']:.2f} ms",
                flush=True,
            )
            rows.append(
                f"| {label} | {run} | {r['fps']:.1f} | {r['p50']:.2f} ms | {r['p99']:.2f} ms | "
                f"{_cpu_cells(_cpu_figures([r]))} |"
            )
            got[label].append(r)
    summary = [
        "| transport | median fps | median of p50 | median of p99 | CPU sender / receiver | "
        "CPU per frame received |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for label, rs in got.items():
        fps, p50, p99 = (statistics.median(r[k] for r in rs) for k in ("fps", "p50", "p99"))
        summary.append(
            f"| {label} | {fps:.1f} | {p50:.2f} ms | {p99:.2f} ms | "
            f"{_cpu_cells(_cpu_figures(rs))} |"
        )
        print(f"  median over {len(rs)} runs: {label}: p50 {p50:.2f} ms, p99 {p99:.2f} ms")
    if not args.write:
        return
    body = "\n".join(
        [
            *section_head("## Color 1080p JPEG at 30 fps, one decoding receiver, next to imagezmq"),
            "The same pre-rendered mock frames (1920x1080 BGR), JPEG quality 85, 4:2:0 for all. "
            "Latency is from before encoding (rgbdcast: the capture time in the frame header; "
            "imagezmq: a timestamp taken before `simplejpeg.encode_jpeg`, sent as its message) to "
            "the decoded BGR array in the receiver's hands, on one clock. rgbdcast's receiver is "
            "`Client.subscribe(...).get()`; imagezmq's decodes with simplejpeg "
            "(`fastdct`, `fastupsample`, as rgbdcast does). Runs alternate, so the machine's "
            "noise falls on all of them alike. CPU is each process's over the measured span, "
            "percent of one core (rgbdcast's sender is the whole server, its mock included), and "
            "per frame received both processes' together.",
            "",
            *summary,
            "",
            "Every run:",
            "",
            *rows,
        ]
    )
    write_section(args.write, "peers-paced", body)
