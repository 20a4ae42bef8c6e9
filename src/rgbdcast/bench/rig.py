"""``rgbdcast bench --suite rig``: what a multi-camera rig rests on, measured.

The clock offset (here) and calibration (:mod:`.rigcal`). For the clock, three servers run as
their own processes with clocks set off by -50, 0 and +37 ms (``serve --clock-offset-ms``); a
client measures each one again and again (fresh rounds of 8 probes) and we report how far the
estimates are from the truth, their spread over the repeats, and the uncertainty the client
states. Loopback: a LAN adds its own delays.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import time
from typing import Any

import numpy as np

from .harness import section_head, stop_processes, write_section

__all__ = ["OFFSETS_MS", "clock_runs", "cmd_rig"]

OFFSETS_MS = (-50.0, 0.0, 37.0)


def _serve(offset_ms: float) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "rgbdcast", "serve", "--no-announce", "--no-web"),
            *("--bind", "127.0.0.1", "--port", "0", "--streams", "depth"),
            *("--clock-offset-ms", str(offset_ms), "--name", f"clock {offset_ms:+g} ms"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    m = re.search(r"at (tcp://\S+)", proc.stdout.readline())
    if m is None:
        stop_processes([proc])
        raise RuntimeError(f"serve did not start: {proc.stderr.read() if proc.stderr else ''}")
    return proc, m.group(1)


def clock_runs(repeats: int = 20) -> dict[float, dict[str, float]]:
    """Per true offset (ms): the estimates' error (mean, worst), spread, and stated uncertainty."""
    from ..client import Client

    procs: list[subprocess.Popen[str]] = []
    out: dict[float, dict[str, float]] = {}
    try:
        servers = []
        for off in OFFSETS_MS:
            proc, endpoint = _serve(off)
            procs.append(proc)
            servers.append((off, endpoint))
        for off, endpoint in servers:
            errors, spreads = [], []
            with Client(endpoint, connect_immediately=True) as client:
                for _ in range(repeats):
                    est = client.clock_offset(fresh=True)
                    if est is None:
                        raise RuntimeError(f"{endpoint} does not tell its time")
                    errors.append(est.offset_ns / 1e6 - off)
                    spreads.append(est.uncertainty_ns / 1e6)
                    time.sleep(0.05)
            out[off] = {
                "mean_error_ms": statistics.fmean(errors),
                "worst_error_ms": max(abs(e) for e in errors),
                "spread_ms": statistics.pstdev(errors),
                "uncertainty_ms": statistics.median(spreads),
                "repeats": float(repeats),
            }
    finally:
        stop_processes(procs)
    return out


def cmd_rig(args: argparse.Namespace) -> None:
    repeats = max(5, min(200, int(args.repeat) * 20))
    print(f"rig: clock offsets of three servers, {repeats} rounds each ...", flush=True)
    runs = clock_runs(repeats)
    rows = []
    for off, r in runs.items():
        print(
            f"  {off:+6.1f} ms: error {r['mean_error_ms']:+.3f} ms mean, "
            f"{r['worst_error_ms']:.3f} ms worst, spread {r['spread_ms']:.3f} ms, "
            f"stated ± {r['uncertainty_ms']:.3f} ms",
            flush=True,
        )
        rows.append(
            f"| {off:+.1f} ms | {r['mean_error_ms']:+.3f} | {r['worst_error_ms']:.3f} | "
            f"{r['spread_ms']:.3f} | {r['uncertainty_ms']:.3f} |"
        )
    if args.write:
        body: list[Any] = [
            *section_head("## Rig: clock offsets across servers"),
            "Three servers, each its own process on this machine, with clocks set off by -50, 0 "
            f"and +37 ms (`serve --clock-offset-ms`); one client measured each {repeats} times "
            "(a fresh round of 8 `time` probes, the fastest round trip kept). Goal: each within "
            "0.5 ms. Loopback only: a LAN's delays are not in these figures.",
            "",
            "| true offset | mean error (ms) | worst error (ms) | spread (ms, std) "
            "| stated ± (ms, median) |",
            "|---|---|---|---|---|",
            *rows,
        ]
        write_section(args.write, "rig-clock", "\n".join(body))
    _calibration(args)


def _calibration(args: argparse.Namespace) -> None:
    from .rigcal import CAL_FPS, CAL_POSES, calibration_runs

    repeats = max(2, min(10, int(args.repeat) * 3))
    rows = []
    for refine in (False, True):
        label = "board + --refine (ICP)" if refine else "board alone"
        print(f"rig: calibrate 3 mock cameras, {label}, {repeats} runs ...", flush=True)
        try:
            runs = calibration_runs(repeats, refine)
        except (RuntimeError, subprocess.SubprocessError) as exc:
            print(f"  skipped: {exc}", flush=True)
            rows.append(f"| {label} | failed: {exc} | | | |")
            continue
        errs = np.array([e for r in runs for e in r["errors"]])  # (runs x cameras, 2)
        secs = [r["seconds"] for r in runs]
        line = (
            f"worst {errs[:, 0].max():.2f} mm / {errs[:, 1].max():.3f}°, mean "
            f"{errs[:, 0].mean():.2f} mm / {errs[:, 1].mean():.3f}°, "
            f"{statistics.median(secs):.1f} s to a result (median)"
        )
        print(f"  {line}", flush=True)
        rows.append(
            f"| {label} | {errs[:, 0].max():.2f} / {errs[:, 1].max():.3f} | "
            f"{errs[:, 0].mean():.2f} / {errs[:, 1].mean():.3f} | "
            f"{statistics.median(secs):.1f} ({min(secs):.1f}-{max(secs):.1f}) | {len(runs)} |"
        )
    if args.write:
        poses = "; ".join(",".join(f"{v:g}" for v in p) for p in CAL_POSES)
        body: list[Any] = [
            *section_head("## Rig: calibration of three mock cameras"),
            "Three mock cameras (1080p color, 512x424 depth, rendered live at "
            f"{CAL_FPS} fps, each served by its own process with `--mock-board`) at the poses "
            f"`{poses}` (`--mock-pose`), all seeing the default ChArUco board 3.5 m away; "
            "`rgbdcast calibrate` run as a process against the three (30 framesets with the "
            "board in two or more cameras), its rig file compared with the true relative poses "
            "of the second and third camera to the first. Goals: within 5 mm and 0.5° from the "
            "board alone, 3 mm and 0.3° with `--refine`. Time to a result includes connecting, "
            "the collection, and ICP.",
            "",
            "| method | worst error (mm / °) | mean error (mm / °) | seconds to a result "
            "(median, range) | runs |",
            "|---|---|---|---|---|",
            *rows,
        ]
        write_section(args.write, "rig-calibration", "\n".join(body))
