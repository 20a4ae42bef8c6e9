"""``rgbdcast bench --suite e2e``: the end-to-end runs from a mock (or a replayed recording) to
N subscriber processes, repeated, with medians, written to BENCHMARKS.md.

How this works: :func:`rgbdcast.bench.e2erun.run_e2e` runs one configuration (a server process
and its subscribers) and returns every stream's figures; this module checks the options,
prepares the source (records the mock first for ``--source replay``), alternates rgbdcast and
bare-pyzmq subscribers over ``--repeat`` runs and writes the section (medians, every run, and with
``--slow-compare`` the fast subscribers' figures next to a run without the slow one).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path
from typing import Any

from ..errors import UsageError
from .e2erun import PRERENDER, describe_source, print_run, record_mock, run_e2e, serve_command
from .harness import (
    format_cpu_by_thread,
    free_port,
    median_cpu_by_thread,
    section_head,
    write_section,
)

__all__ = ["cmd_e2e"]


def _serve_args(args: argparse.Namespace) -> list[str]:
    out = []
    for name in ("depth_codec", "color_codec", "color_quality", "color_strips"):
        value = getattr(args, name, None)
        if value is not None:
            out += ["--" + name.replace("_", "-"), str(value)]
    return out


def cmd_e2e(args: argparse.Namespace) -> None:
    if any(n < 1 or n > 64 for n in args.subscribers):
        raise UsageError("subscriber counts must be between 1 and 64")
    if args.repeat < 1:
        raise UsageError("--repeat must be at least 1")
    if args.slow and args.slow >= min(args.subscribers):
        raise UsageError("--slow must be smaller than every subscriber count")
    if args.slow_compare and not args.slow:
        raise UsageError("--slow-compare needs --slow N")
    clients = ["rgbdcast"] if args.no_peer else ["rgbdcast", "pyzmq"]
    with tempfile.TemporaryDirectory(prefix="rgbdcast-bench-") as tmp:
        args.source_info, source_args = _prepare_source(args, Path(tmp))
        runs = _e2e_runs(args, clients, source_args)
    if args.write:
        _write_e2e(args, runs)


def _prepare_source(args: argparse.Namespace, tmp: Path) -> tuple[dict[str, Any], list[str]]:
    """What the runs serve: the mock as it is, or a recording of it (made here if not given)."""
    if args.source != "replay":
        if args.replay:
            raise UsageError("--replay FILE needs --source replay")
        if args.source == "mock-yuy2":
            return {"prerender": PRERENDER, "layout": "yuy2"}, ["--mock-color-layout", "yuy2"]
        return {"prerender": PRERENDER}, []
    path = Path(args.replay) if args.replay else tmp / "source.mcap"
    seconds = float(args.replay_seconds)
    if not args.replay:
        if not 1 <= seconds <= 600:
            raise UsageError("--replay-seconds must be between 1 and 600")
        print(f"recording {seconds:g} s of the mock to replay ...", flush=True)
        port = free_port()
        serve = serve_command(
            port, args.streams, args.fps, seconds + 30, PRERENDER, _serve_args(args)
        )
        record_mock(path, serve, f"tcp://127.0.0.1:{port}", seconds)
    elif not path.is_file():
        raise UsageError(f"--replay {path}: no such file")
    info = {"replay": str(path), "seconds": 0.0 if args.replay else seconds}
    return info, ["--replay", str(path), "--loop"]


def _e2e_runs(
    args: argparse.Namespace, clients: list[str], source_args: list[str]
) -> list[dict[str, Any]]:
    runs = []
    for subscribers in args.subscribers:
        # with --slow-compare each run is preceded by one of the others alone (same noise)
        pairs = [(subscribers - args.slow, 0)] if args.slow_compare else []
        pairs.append((subscribers, args.slow))
        for i, (n, slow), client in (
            (i, pair, client) for i in range(args.repeat) for pair in pairs for client in clients
        ):
            what = f"{n} {client} subscriber(s)" + (f", {slow} slow" if slow else "")
            print(
                f"run {i + 1}/{args.repeat}: {what}, streams {args.streams} at "
                f"{args.fps:g} fps, {args.duration:g} s ...",
                flush=True,
            )
            r = run_e2e(
                n,
                args.streams,
                args.fps,
                args.duration,
                args.warmup,
                args.port,
                client,
                args.no_decode,
                slow,
                _serve_args(args),
                source_args=source_args,
            )
            r["run"] = i + 1
            runs.append(r)
            print_run(r)
    return runs


def _stream_median(runs: list[dict[str, Any]], stream: str, key: str) -> float:
    return float(statistics.median(r["streams"][stream][key] for r in runs))


def _by_config(runs: list[dict[str, Any]]) -> dict[tuple[int, str], list[dict[str, Any]]]:
    """The runs grouped by (subscribers that are not slow, client), in the order first seen."""
    groups: dict[tuple[int, str], list[dict[str, Any]]] = {}
    for r in runs:
        groups.setdefault((r["subscribers"] - r["slow"], r["client"]), []).append(r)
    return groups


def _medians(runs: list[dict[str, Any]]) -> list[str]:
    """Per subscriber count, client and stream: medians over the repeated runs."""
    lines = [
        "| subscribers | client | stream | fps | latency p50 | latency p99 | dropped | "
        "server CPU | of which the source | serving |",
        "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    groups = _by_config(runs)
    for (n, client), rs in groups.items():
        for name in rs[0]["streams"]:
            fps, p50, p99, dropped = (
                _stream_median(rs, name, key)
                for key in ("fps_mean", "latency_p50_ms", "latency_p99_ms", "dropped")
            )
            cpu = statistics.median(r["server_cpu_percent"] for r in rs)
            src = statistics.median(r["source_cpu_percent"] for r in rs)
            serving = statistics.median(
                r["server_cpu_percent"] - r["source_cpu_percent"] for r in rs
            )
            lines.append(
                f"| {n} | {client} | {name} | {fps:.1f} | {p50:.2f} ms | {p99:.2f} ms | "
                f"{dropped:.0f} | {cpu:.1f}% | {src:.1f}% | {serving:.1f}% |"
            )
    return [f"Medians over the {len(runs) // max(1, len(groups))} runs:", "", *lines]


def _cpu_by_thread(runs: list[dict[str, Any]]) -> list[str]:
    """Per subscriber count and client: the server's CPU by OS thread, medians over the runs."""
    return [
        "Where the server's CPU went, by OS thread (percent of one core, median over the runs; "
        "`pub-<stream>-<device>` encodes and sends one stream, `codec-workers` encode the other "
        "JPEG bands, `zmq-io` is ZeroMQ's I/O thread writing to every subscriber, "
        "`src-<device>` is the source):",
        "",
        *(
            f"- {n} {client} subscriber(s): "
            + format_cpu_by_thread(median_cpu_by_thread([r["server_threads"] for r in rs]))
            for (n, client), rs in _by_config(runs).items()
        ),
    ]


def _slow_comparison(runs: list[dict[str, Any]]) -> list[str]:
    """Per client and stream: medians over the runs of fps and p99, alone vs beside the slow."""
    lines = [
        "| client | stream | fps alone | fps beside slow | ratio | p99 alone | p99 beside slow "
        "| ratio |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    clients = dict.fromkeys(r["client"] for r in runs)
    for client in clients:
        alone = [r for r in runs if r["client"] == client and not r["slow"]]
        beside = [r for r in runs if r["client"] == client and r["slow"]]
        for name in alone[0]["streams"]:
            fa, fs = (_stream_median(rs, name, "fps_mean") for rs in (alone, beside))
            pa, ps = (_stream_median(rs, name, "latency_p99_ms") for rs in (alone, beside))
            lines.append(
                f"| {client} | {name} | {fa:.1f} | {fs:.1f} | {fs / fa:.2f} | {pa:.2f} ms | "
                f"{ps:.2f} ms | {ps / pa:.2f} |"
            )
    return ["Medians over the runs:", "", *lines]


def _write_e2e(args: argparse.Namespace, runs: list[dict[str, Any]]) -> None:
    rows = [
        "| subscribers | client | run | stream | fps (mean / min) | latency p50 | latency p99"
        " | dropped | Mbit/s each | server CPU (source) | server RSS |",
        "|---:|---|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in runs:
        label = r["client"] + (" (decoding)" if r["decode"] else "")
        if args.slow_compare:
            label += f", {r['slow']} slow beside" if r["slow"] else ", alone"
        for name, st in r["streams"].items():
            rows.append(
                f"| {r['subscribers'] - r['slow']} | {label} | {r['run']} | {name} | "
                f"{st['fps_mean']:.1f} / {st['fps_min']:.1f} | "
                f"{st['latency_p50_ms']:.2f} ms | {st['latency_p99_ms']:.2f} ms | "
                f"{st['dropped']} | {st['mbit_s_each']:.1f} | "
                f"{r['server_cpu_percent']:.1f}% ({r['source_cpu_percent']:.1f}%) | "
                f"{r['server_rss_mb']:.0f} MB |"
            )
    decode = "no-decode" if args.no_decode else "decode"
    key = f"e2e-{args.streams.replace(',', '+')}-{decode}" + (
        (f"-slow{args.slow}" + ("-compare" if args.slow_compare else "")) if args.slow else ""
    )
    codecs_used = " ".join(_serve_args(args))
    if codecs_used:
        key += "-" + codecs_used.replace("--", "").replace(" ", "-")
    replay = args.source_info.get("replay")
    if replay:
        key += "-replay"
    if args.source_info.get("layout") == "yuy2":
        key += "-yuy2"
    served = f", {codecs_used}" if codecs_used else ""
    served += ", a replayed recording" if replay else ""
    served += ", color from YUY2" if args.source_info.get("layout") == "yuy2" else ""
    title = f"End to end: {args.streams} at {args.fps:g} fps{served}, " + (
        "subscribers that do not decode" if args.no_decode else "decoding subscribers"
    )
    notes = []
    if args.slow:
        slow = [f"{f:.1f}" for r in runs for f in r["slow_fps"]]
        notes = [
            "",
            f"Plus {args.slow} slow subscriber(s) reading one frame a second beside "
            f"the others in {'every other' if args.slow_compare else 'every'} run (not in the "
            f"rows; they received {', '.join(slow)} frames/s). "
            + (
                "Each run with them follows one of the same subscribers alone, so both see "
                "the machine in the same state."
                if args.slow_compare
                else "Compare with the section without slow subscribers."
            ),
        ]
        if args.slow_compare:
            notes += ["", *_slow_comparison(runs)]
    if args.repeat > 1 and not args.slow_compare:
        notes += ["", *_medians(runs)]
    notes += ["", *_cpu_by_thread(runs)]
    body = "\n".join(
        [
            *section_head(
                f"## {title}"
                + (f", {args.slow} slow subscriber(s) beside them" if args.slow else "")
            ),
            describe_source(args.source_info),
            "Server CPU is the whole server process; in brackets, and in the medians' "
            "'of which the source' column, its device thread (the source's own cost: drawing "
            "or reading the file), which the 'serving' column leaves out. Each subscriber is "
            "another process. `rgbdcast` subscribers use `Client` and take every frame from "
            "`Subscription.get()` on a user thread (decoded, or as `EncodedFrame` with "
            "`decode=False`); `pyzmq` subscribers are the transport ceiling: bare SUB sockets on "
            "the same server in the same run, header parsed, nothing decoded. Latency is capture "
            "(the frame's host timestamp) to the frame in the subscriber's hands, on one clock. "
            "Dropped counts sequence gaps (frames the subscriber never got). CPU is percent of "
            "one core.",
            *notes,
            "",
            *rows,
        ]
    )
    write_section(args.write, key, body)
