"""Rigid poses from many noisy views (pure numpy): what ``rgbdcast calibrate`` is made of.

Poses are 4x4 row-major matrices in metres; ``a_from_b`` maps a point of frame b to frame a
(``p_a = a_from_b @ [p_b, 1]``), as ``rig_from_depth`` in the rig file does.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import UsageError

__all__ = [
    "PoseEstimate",
    "angle_deg",
    "chain_poses",
    "fit_plane",
    "invert",
    "mean_pose",
    "pose_difference",
    "rigid_fit",
]

MIN_INLIER_SHARE = 0.7
"""Below this share of views agreeing with the consensus, a pose is called inconsistent."""
FLOOR_MM, FLOOR_DEG = 15.0, 0.5
"""Views this close always count as agreeing, however tight the rest are: one view of a board
3.5 m away can be 10 mm and 0.2 degrees off; a bumped camera moves more."""


def invert(m: np.ndarray) -> np.ndarray:
    """The inverse of a rigid 4x4 transform."""
    out = np.eye(4)
    r = m[:3, :3]
    out[:3, :3] = r.T
    out[:3, 3] = -r.T @ m[:3, 3]
    return out


def angle_deg(r: np.ndarray) -> float:
    """The angle of a rotation matrix, in degrees."""
    c = (float(np.trace(r)) - 1.0) / 2.0
    return math.degrees(math.acos(max(-1.0, min(1.0, c))))


def pose_difference(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """How far apart two poses are: translation in mm and rotation in degrees."""
    return float(np.linalg.norm(a[:3, 3] - b[:3, 3]) * 1000.0), angle_deg(a[:3, :3].T @ b[:3, :3])


def _nearest_rotation(m: np.ndarray) -> np.ndarray:
    u, _, vt = np.linalg.svd(m)
    d = np.sign(np.linalg.det(u @ vt))
    return u @ np.diag([1.0, 1.0, d]) @ vt


def rigid_fit(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The rigid transform taking the points *src* onto *dst* (N x 3 each) in the least-squares
    sense (Kabsch): ``dst ~ M @ [src, 1]``."""
    src = np.asarray(src, np.float64).reshape(-1, 3)
    dst = np.asarray(dst, np.float64).reshape(-1, 3)
    if len(src) != len(dst) or len(src) < 3:
        raise UsageError(f"a rigid fit needs 3 or more matched points, got {len(src)}")
    cs, cd = src.mean(axis=0), dst.mean(axis=0)
    h = (src - cs).T @ (dst - cd)
    r = _nearest_rotation(h.T)
    out = np.eye(4)
    out[:3, :3] = r
    out[:3, 3] = cd - r @ cs
    return out


def fit_plane(points: np.ndarray, rounds: int = 3) -> tuple[np.ndarray, float, float, int]:
    """The plane ``n . p = offset`` through *points* (N x 3), refitted *rounds* times without the
    points farther than 2.5 sigma (people, edges, flying pixels). Returns the unit normal (facing
    the origin's side: ``offset`` <= 0 for a plane in front of a camera), the offset, the RMS
    distance of the points kept, and how many were kept."""
    pts = np.asarray(points, np.float64).reshape(-1, 3)
    keep = np.ones(len(pts), bool)
    normal, offset, rms = np.array([0.0, 0.0, 1.0]), 0.0, math.inf
    for _ in range(max(1, rounds)):
        sel = pts[keep]
        if len(sel) < 3:
            raise UsageError(f"a plane needs 3 or more points, got {len(sel)}")
        centre = sel.mean(axis=0)
        normal = np.linalg.svd(sel - centre, full_matrices=False)[2][2]
        offset = float(normal @ centre)
        if offset > 0:
            normal, offset = -normal, -offset
        dist = pts @ normal - offset
        rms = float(np.sqrt(np.mean(dist[keep] ** 2)))
        keep = np.abs(dist) <= max(2.5 * rms, 1e-4)
    return normal, offset, rms, int(keep.sum())


@dataclass(frozen=True)
class PoseEstimate:
    """One pose from many views of it: their consensus and how well they agree."""

    matrix: np.ndarray
    views: int
    inliers: int
    spread_mm: float
    """RMS distance of the agreeing views' translations from the consensus."""
    spread_deg: float
    worst_mm: float
    """The farthest view (agreeing or not), for the message when they disagree."""
    worst_deg: float

    @property
    def consistent(self) -> bool:
        return self.inliers >= MIN_INLIER_SHARE * self.views


def mean_pose(views: Sequence[np.ndarray]) -> PoseEstimate:
    """The consensus of *views* (4x4 each) of one pose. The view nearest all others (the
    medoid) anchors it; views within 3 robust deviations of it (measured on its nearest half,
    and never tighter than ``FLOOR_MM``/``FLOOR_DEG``) agree; the consensus is their mean
    (rotations averaged and projected back to a rotation)."""
    if not views:
        raise UsageError("a pose needs one view or more")
    mats = np.asarray(views, np.float64).reshape(-1, 4, 4)
    n = len(mats)
    dt = np.linalg.norm(mats[:, None, :3, 3] - mats[None, :, :3, 3], axis=2) * 1000.0
    rel = np.einsum("ikj,lkm->iljm", mats[:, :3, :3], mats[:, :3, :3])  # Ri^T Rl
    cos = np.clip((np.trace(rel, axis1=2, axis2=3) - 1.0) / 2.0, -1.0, 1.0)
    da = np.degrees(np.arccos(cos))
    anchor = int(np.argmin((dt / FLOOR_MM + da / FLOOR_DEG).sum(axis=1)))
    to_t, to_a = dt[anchor], da[anchor]
    # the noise scale from the anchor's nearest half: a bumped camera's second cluster (half
    # the views or fewer) must not widen the limits until it is counted as agreeing
    half = max(1, (n + 1) // 2)
    lim_t = max(FLOOR_MM, 3 * 1.4826 * float(np.median(np.sort(to_t)[:half])))
    lim_a = max(FLOOR_DEG, 3 * 1.4826 * float(np.median(np.sort(to_a)[:half])))
    agree = (to_t <= lim_t) & (to_a <= lim_a)
    chosen = mats[agree]
    out = np.eye(4)
    out[:3, :3] = _nearest_rotation(chosen[:, :3, :3].mean(axis=0))
    out[:3, 3] = chosen[:, :3, 3].mean(axis=0)
    diffs = np.array([pose_difference(out, m) for m in mats])
    inl = diffs[agree]
    return PoseEstimate(
        matrix=out,
        views=n,
        inliers=int(agree.sum()),
        spread_mm=float(np.sqrt(np.mean(inl[:, 0] ** 2))),
        spread_deg=float(np.sqrt(np.mean(inl[:, 1] ** 2))),
        worst_mm=float(diffs[:, 0].max()),
        worst_deg=float(diffs[:, 1].max()),
    )


def chain_poses(
    nodes: Iterable[str], edges: Mapping[tuple[str, str], PoseEstimate], root: str
) -> dict[str, tuple[np.ndarray, str | None]]:
    """Each node's pose in the root's frame (``root_from_node``) and the node it was placed
    through (None for the root), found from the pairwise estimates *edges* (``edges[a, b]`` is
    ``a_from_b``): the spanning tree that keeps the best-observed pairs (most agreeing views) is
    grown from *root*. Nodes that no pair links to the root are left out."""
    placed: dict[str, tuple[np.ndarray, str | None]] = {root: (np.eye(4), None)}
    todo = set(nodes) - {root}
    while todo:
        best: tuple[int, str, np.ndarray, str] | None = None
        for (a, b), est in edges.items():
            for near, far, m in ((a, b, est.matrix), (b, a, invert(est.matrix))):
                if near in placed and far in todo and (best is None or est.inliers > best[0]):
                    best = (est.inliers, far, placed[near][0] @ m, near)
        if best is None:
            break
        placed[best[1]] = (best[2], best[3])
        todo.discard(best[1])
    return placed
