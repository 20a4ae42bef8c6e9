"""``rgbdcast bench --suite rig``, calibration: three mock cameras at known poses, each served by
its own process and showing the default board, calibrated by ``rgbdcast calibrate`` (a process
too, as a user runs it), with and without ``--refine``; each relative pose compared with the
truth the mocks were given.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..devices.mock import MockDevice
from ..geometry.poses import invert, pose_difference
from .harness import serve_process, stop_processes

__all__ = ["CAL_POSES", "calibration_runs"]

CAL_POSES = (
    (0.0, 0.0, 0.0, 0.0, 0.0, 0.0),
    (0.6, 0.0, 0.2, 0.0, -15.0, 0.0),
    (-0.5, -0.1, 0.0, 5.0, 12.0, 1.0),
)
CAL_FPS = 10
"""The mocks render live (pre-rendered framesets would repeat their noise): 10 fps each keeps
three 1080p renderers within this machine's two cores beside the calibration."""


def _serve(i: int, pose: tuple[float, ...]) -> tuple[subprocess.Popen[str], str]:
    extra = ["--mock", "--mock-board", "--mock-pose=" + ",".join(f"{v:g}" for v in pose)]
    return serve_process(f"cam{i}", "depth,color", extra, CAL_FPS)


def _truth() -> list[np.ndarray]:
    mats = []
    for pose in CAL_POSES:
        r, t = MockDevice("truth", pose=pose, streams=["depth"]).rig_from_depth
        m = np.eye(4)
        m[:3, :3], m[:3, 3] = r, t
        mats.append(m)
    return [invert(mats[0]) @ m for m in mats]


def calibration_runs(repeats: int, refine: bool) -> list[dict[str, Any]]:
    """*repeats* runs of ``rgbdcast calibrate``: per run the seconds to a result and each
    camera's error against the truth (mm, degrees)."""
    procs: list[subprocess.Popen[str]] = []
    runs = []
    truth = _truth()
    try:
        endpoints = []
        for i, pose in enumerate(CAL_POSES):
            proc, endpoint = _serve(i, pose)
            procs.append(proc)
            endpoints.append(endpoint)
        time.sleep(1.0)
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "rig.json"
            for _ in range(repeats):
                cmd = [sys.executable, "-m", "rgbdcast", "calibrate", *endpoints, "-o", str(out)]
                t0 = time.monotonic()
                res = subprocess.run(
                    cmd + (["--refine"] if refine else []),
                    capture_output=True,
                    text=True,
                    timeout=300,
                )
                took = time.monotonic() - t0
                if res.returncode != 0:
                    raise RuntimeError(f"calibrate failed: {res.stderr.strip()}")
                doc = json.loads(out.read_text())
                errors = []
                for ep, want in zip(endpoints, truth, strict=True):
                    got = np.asarray(doc["devices"][f"{ep} mock0"]["rig_from_depth"])
                    errors.append(pose_difference(got, want))
                runs.append({"seconds": took, "errors": errors[1:]})
    finally:
        stop_processes(procs)
    return runs
