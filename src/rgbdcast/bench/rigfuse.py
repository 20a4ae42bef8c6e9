"""``rgbdcast bench --suite rig``, live fusion and bandwidth: four mock cameras (depth and
color), each served by its own process, fused into one colored cloud per rig frameset by one
consumer (this process: a :class:`~rgbdcast.rig.Rig` with a rig file of the mocks' true poses).
Reported: fused clouds per second, the consumer's CPU, the rig skew p50/p99, what each camera
sends, and what LiveScan3D's point format (9 bytes a point) would send for the same clouds.
"""

from __future__ import annotations

import statistics
import subprocess
import time
from typing import Any

import numpy as np
import psutil

from ..geometry.calibration import Extrinsics
from ..geometry.rigfile import RigCamera, RigFile
from .harness import serve_process, stop_processes

__all__ = ["FUSE_POSES", "LIVESCAN_BYTES_PER_POINT", "fusion_run"]

FUSE_POSES = (
    (0.0, 0.0, 0.0, 0.0, 0.0, 0.0),
    (0.6, 0.0, 0.2, 0.0, -15.0, 0.0),
    (-0.5, -0.1, 0.0, 5.0, 12.0, 1.0),
    (0.2, -0.3, -0.3, 8.0, -5.0, 0.0),
)
LIVESCAN_BYTES_PER_POINT = 9
"""LiveScan3D sends each point as three int16 coordinates and three uint8 colors."""


def fusion_run(
    duration: float, color_size: tuple[int, int], decimate: int = 1, fps: float = 30.0
) -> dict[str, Any]:
    """Serve four posed mocks (pre-rendered, so the servers cost little), fuse for *duration*
    seconds and measure."""
    from ..devices.mock import MockDevice
    from ..rig import Rig

    procs: list[subprocess.Popen[str]] = []
    try:
        members, cams = [], {}
        for i, pose in enumerate(FUSE_POSES):
            extra = ["--mock-pose=" + ",".join(f"{v:g}" for v in pose)]
            extra += ["--color-size", f"{color_size[0]}x{color_size[1]}", "--prerender", "60"]
            proc, endpoint = serve_process(f"fuse{i}", "depth,color", extra, fps)
            procs.append(proc)
            members.append((endpoint, "mock0"))
            truth = MockDevice("truth", pose=pose, streams=["depth"]).rig_from_depth
            cams[f"{endpoint} mock0"] = RigCamera(Extrinsics.from_matrix(*truth))
        with Rig(members, rig_file=RigFile(cams)) as rig:
            rig.get(timeout=30.0)  # every camera is sending
            skews, points, clouds = [], [], 0
            full_points: list[int] = []
            start_bytes = {k: v["bytes"] for k, v in rig.stats().items()}
            servers = [psutil.Process(p.pid) for p in procs]
            server_cpu0 = sum(_cpu_s(p) for p in servers)
            cpu0, t0 = time.process_time(), time.monotonic()
            while time.monotonic() - t0 < duration:
                try:
                    rs = rig.get(timeout=2.0)
                except TimeoutError:
                    continue
                cloud = rig.point_cloud(rs, decimate=decimate)
                clouds += 1
                points.append(len(cloud))
                skews.append(rs.skew_ns / 1e6)
                if decimate == 1 and len(full_points) < 20:
                    full_points.append(len(cloud) // len(rs.frames))
            took = time.monotonic() - t0
            cpu = time.process_time() - cpu0
            server_cpu = sum(_cpu_s(p) for p in servers) - server_cpu0
            stats = rig.stats()
        per_cam_mbit = [(stats[k]["bytes"] - start_bytes[k]) * 8 / 1e6 / took for k in stats]
        return {
            "cameras": len(members),
            "color": f"{color_size[0]}x{color_size[1]}",
            "decimate": decimate,
            "clouds_per_s": clouds / took,
            "points": statistics.median(points) if points else 0,
            "cpu_pct": 100.0 * cpu / took,
            "servers_cpu_pct": 100.0 * server_cpu / took,
            "skew_p50_ms": float(np.percentile(skews, 50)) if skews else float("nan"),
            "skew_p99_ms": float(np.percentile(skews, 99)) if skews else float("nan"),
            "replaced": sum(v["replaced"] for v in stats.values()),
            "unmatched": sum(v["unmatched"] for v in stats.values()),
            "camera_mbit_s": statistics.mean(per_cam_mbit),
            "points_per_camera": statistics.median(full_points) if full_points else None,
            "fps": fps,
        }
    finally:
        stop_processes(procs)


def _cpu_s(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return float(t.user + t.system)


def livescan_mbit_s(points_per_camera: float, fps: float) -> float:
    """What LiveScan3D's format sends for one camera's clouds of that many points, Mbit/s."""
    return points_per_camera * LIVESCAN_BYTES_PER_POINT * fps * 8 / 1e6
