"""``rgbdcast bench --suite rig``: what a multi-camera rig rests on, measured.

The clock offset (here) and calibration (:mod:`.rigcal`). For the clock, three servers run as
their own processes with clocks set off by -50, 0 and +37 ms (``serve --clock-offset-ms``); a
client measures each one again and again (fresh rounds of 8 probes) and we report how far the
estimates are from the truth, their spread over the repeats, and the uncertainty the client
states. Loopback: a LAN adds its own delays.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import time
from typing import Any

import numpy as np

from .harness import section_head, serve_process, stop_processes, write_section

__all__ = ["OFFSETS_MS", "clock_runs", "cmd_rig"]

OFFSETS_MS = (-50.0, 0.0, 37.0)


def _serve(offset_ms: float) -> tuple[subprocess.Popen[str], str]:
    name = f"clock {offset_ms:+g} ms"
    return serve_process(name, "depth", ["--clock-offset-ms", str(offset_ms)])


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
    _fusion(args)


def _fusion(args: argparse.Namespace) -> None:
    from .rigfuse import FUSE_POSES, LIVESCAN_BYTES_PER_POINT, fusion_run, livescan_mbit_s

    duration = max(5.0, float(args.duration))
    rows, full = [], None
    for size, decimate in (((1920, 1080), 1), ((960, 540), 1), ((960, 540), 2)):
        print(
            f"rig: live fusion of 4 cameras, color {size[0]}x{size[1]}, decimate {decimate}, "
            f"{duration:g} s ...",
            flush=True,
        )
        r = fusion_run(duration, size, decimate)
        full = full or r
        print(
            f"  {r['clouds_per_s']:.1f} fused clouds/s of {r['points'] / 1000:.0f}k points, "
            f"consumer CPU {r['cpu_pct']:.0f}%, 4 servers {r['servers_cpu_pct']:.0f}%, skew "
            f"p50 {r['skew_p50_ms']:.1f} ms p99 {r['skew_p99_ms']:.1f} ms, "
            f"{r['camera_mbit_s']:.0f} Mbit/s a camera",
            flush=True,
        )
        rows.append(
            f"| {r['color']} | {decimate} | {r['clouds_per_s']:.1f} | {r['points'] / 1000:.0f}k | "
            f"{r['cpu_pct']:.0f}% | {r['servers_cpu_pct']:.0f}% | {r['skew_p50_ms']:.1f} / "
            f"{r['skew_p99_ms']:.1f} | {r['replaced']} / {r['unmatched']} | "
            f"{r['camera_mbit_s']:.0f} |"
        )
    assert full is not None
    per_cam = full["points_per_camera"] or 0
    livescan = livescan_mbit_s(per_cam, 30.0)
    print(f"  LiveScan3D's format for those clouds: {livescan:.0f} Mbit/s a camera", flush=True)
    if args.write:
        poses = "; ".join(",".join(f"{v:g}" for v in p) for p in FUSE_POSES)
        body: list[Any] = [
            *section_head("## Rig: live fusion of four cameras, and bandwidth"),
            "Four mock cameras (depth 512x424 and color, 30 fps, pre-rendered so that the "
            f"servers mostly encode and send), each served by its own process, at `{poses}`; one "
            "consumer (the bench process) runs a `Rig` with a rig file of their true poses and "
            f"fuses every rig frameset into one colored cloud (`rig.point_cloud`) for {duration:g} "
            "s. All five processes share this machine's two cores: on a real rig each camera "
            "has its host. The rig decodes lazily: a frameset replaced before the consumer "
            "takes it is never decoded (before that change the 1080p row gave 5.0 clouds/s at "
            "109% CPU). Skew is the spread of the four capture times in a rig frameset "
            "(free-running cameras keep their phases: at 30 fps up to half a period from the "
            "set's middle).",
            "",
            "| color | decimate | fused clouds/s | points a cloud | consumer CPU | 4 servers' "
            "CPU | skew p50 / p99 (ms) | replaced / unmatched | Mbit/s a camera |",
            "|---|---|---|---|---|---|---|---|---|",
            *rows,
            "",
            f"**Bandwidth.** A camera sends depth (lossless) and 1080p color (JPEG): "
            f"{full['camera_mbit_s']:.0f} Mbit/s measured. LiveScan3D sends each colored point "
            f"as {LIVESCAN_BYTES_PER_POINT} bytes: for the same clouds ({per_cam / 1000:.0f}k "
            f"points a camera at 30 fps) that is {livescan:.0f} Mbit/s before its zstd, "
            f"{livescan / max(full['camera_mbit_s'], 1e-9):.1f}x ours, and the receiver still "
            "gets the images and the calibration to rebuild clouds at any density.",
        ]
        write_section(args.write, "rig-fusion", "\n".join(body))


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
