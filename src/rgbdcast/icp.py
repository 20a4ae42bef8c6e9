"""``calibrate --refine``: the board placed the cameras; their overlapping depth now aligns them
closer, with Open3D's point-to-plane ICP (an optional extra: ``pip install 'rgbdcast[icp]'``).

What each part is good at: the board's place in each camera is measured well (its plane from
thousands of depth points, its corners in color: about a millimetre), its tilt less so (a tenth
of a degree, which 3.5 m away moves the other camera by 6 mm). ICP over the room's surfaces
finds the cameras' relative rotation to a hundredth of a degree, but its translation is pulled by
whatever moved between the cameras' captures and slides along walls (5-40 mm on the mock room,
measured). So the refined pose takes ICP's rotation, and the translation that makes both cameras
see the board's centre at the same place.

Each camera but the first, in the order calibration placed them, is aligned to the cloud of the
cameras already aligned (the first one's, then more), starting from where the board put it. Two
rounds (3 cm, then 1 cm correspondences) on 1 cm voxels. A correction larger than the board can
be wrong by (2 cm, 1°) is refused: ICP then slid along a plane, and the board's pose is kept.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .devices.base import require
from .geometry.calibration import Extrinsics
from .geometry.poses import pose_difference
from .geometry.rigfile import RigCamera, RigFile

__all__ = ["refine_rig", "require_open3d"]

VOXEL_M = 0.01
ROUNDS_M = (0.03, 0.01)
MAX_CORRECTION = (20.0, 1.0)  # mm, degrees
ROBUST_M = 0.01
"""Tukey's loss scale: correspondences farther than this barely count (moved things)."""


def require_open3d() -> Any:
    return require("open3d", "icp")


def _cloud(o3d: Any, points: np.ndarray) -> Any:
    pc = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(points.astype(np.float64)))
    pc = pc.voxel_down_sample(VOXEL_M)
    pc.estimate_normals(o3d.geometry.KDTreeSearchParamHybrid(radius=4 * VOXEL_M, max_nn=30))
    return pc


def refine_rig(
    rig: RigFile,
    clouds: Mapping[str, np.ndarray],
    order: Sequence[str],
    via: Mapping[str, str | None],
    centres: Mapping[tuple[str, str], Sequence[tuple[np.ndarray, np.ndarray]]],
) -> tuple[RigFile, list[str]]:
    """*rig* with every camera of *order* after the first aligned by ICP; *clouds* are each
    camera's points in its own depth frame (N x 3, metres), *via* the camera each was placed
    through and *centres* the board's centre seen by both (per pair and view). Returns the new
    rig file (its ``calibration.refine`` says what changed) and one line per camera."""
    o3d = require_open3d()
    reg = o3d.pipelines.registration
    devices = dict(rig.devices)
    root = order[0]
    target = _cloud(o3d, devices[root].rig_from_depth.apply(clouds[root]))
    lines, report = [], {}
    for key in order[1:]:
        old = devices[key].rig_from_depth.matrix()
        source = _cloud(o3d, clouds[key])
        before = reg.evaluate_registration(source, target, ROUNDS_M[-1], old)
        m = old
        for dist in ROUNDS_M:
            m = reg.registration_icp(
                source,
                target,
                dist,
                m,
                reg.TransformationEstimationPointToPlane(reg.TukeyLoss(k=ROBUST_M)),
            ).transformation
        m = _board_translation(m, devices, key, via[key], centres)
        after = reg.evaluate_registration(source, target, ROUNDS_M[-1], m)
        moved_mm, moved_deg = pose_difference(old, m)
        kept = moved_mm <= MAX_CORRECTION[0] and moved_deg <= MAX_CORRECTION[1]
        if not kept or after.inlier_rmse > before.inlier_rmse * 1.02:
            m, kept = old, False
        report[key] = {
            "moved_mm": round(moved_mm, 2),
            "moved_deg": round(moved_deg, 3),
            "rmse_mm_before": round(before.inlier_rmse * 1000, 2),
            "rmse_mm_after": round((after if kept else before).inlier_rmse * 1000, 2),
            "overlap_before": round(before.fitness, 3),
            "overlap_after": round((after if kept else before).fitness, 3),
            "applied": kept,
        }
        r = report[key]
        verdict = (
            f"moved {moved_mm:.1f} mm / {moved_deg:.2f}°"
            if kept
            else f"kept the board's pose (ICP wanted {moved_mm:.0f} mm / {moved_deg:.1f}°)"
        )
        lines.append(
            f"refine {key}: {verdict}; depth mismatch {r['rmse_mm_before']} -> "
            f"{r['rmse_mm_after']} mm over {r['overlap_after'] * 100:.0f}% overlap"
        )
        cam = devices[key]
        devices[key] = RigCamera(
            Extrinsics.from_matrix(m[:3, :3], m[:3, 3]),
            cam.reprojection_px,
            cam.spread_mm,
            cam.spread_deg,
        )
        target += _cloud(o3d, (m @ np.c_[clouds[key], np.ones(len(clouds[key]))].T).T[:, :3])
    extra = dict(rig.extra)
    extra["calibration"] = {**dict(extra.get("calibration", {})), "refine": report}
    return RigFile(devices, rig.board, rig.created, rig.frame, extra), lines


def _board_translation(
    m: np.ndarray,
    devices: Mapping[str, RigCamera],
    key: str,
    parent: str | None,
    centres: Mapping[tuple[str, str], Sequence[tuple[np.ndarray, np.ndarray]]],
) -> np.ndarray:
    """ICP's rotation with the translation that puts the board's centre, seen by *key* and the
    camera it was placed through, at the same place (their mean over the views)."""
    if parent is None:
        return m
    pairs = centres.get((parent, key))
    if pairs is None:
        pairs = [(b, a) for a, b in centres.get((key, parent), ())]
    if not pairs:
        return m
    rig_from_parent = devices[parent].rig_from_depth
    seen_parent = rig_from_parent.apply(np.array([p for p, _ in pairs]))
    seen_key = np.array([k for _, k in pairs]) @ m[:3, :3].T
    out = m.copy()
    out[:3, 3] = (seen_parent - seen_key).mean(axis=0)
    return out
