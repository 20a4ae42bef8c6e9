"""Registered RGB-D: color on depth, depth in the color camera, colored point clouds (numpy).

How this works: every depth pixel is deprojected through its ray (:mod:`.camera`), moved into the
color camera (``R @ p + t``) and projected with the color camera's distortion. Two depth pixels
can land on the same color pixel: the nearer surface hides the farther one there, and the farther
one must not take the color of the nearer (the color "bleeding" across depth edges that
LiveScan3D users see). So the projected points are first splatted into a z-buffer over the color
image: cells of about one depth pixel's footprint, each point writing the 2x2 cells around it so
that a surface leaves no holes. A point then takes a color only if it is within ``tolerance`` of
the nearest surface in its cell; otherwise it is *occluded* and gets none.

:func:`register` does the mapping once and returns a :class:`Registration` that every product
(color per depth pixel, depth per color pixel, a colored cloud) reads. ``_native`` runs the same
algorithm in C where it was built (``rgbdcast bench --suite geometry`` measures both).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import UsageError
from ..frames import Intrinsics
from .calibration import Calibration
from .camera import check_table, distort, ray_table

__all__ = ["Registration", "register", "splat_cell", "tolerance"]


def tolerance(z: np.ndarray | float) -> np.ndarray | float:
    """How far behind the nearest surface a point may be and still be seen (metres): 2% of its
    distance plus 1 cm, more than a grazing floor's step between neighbouring depth pixels."""
    return 0.02 * z + 0.01


def splat_cell(depth: Intrinsics, color: Intrinsics, decimate: int = 1) -> int:
    """The z-buffer's cell size in color pixels: about one depth pixel's footprint."""
    return max(1, round(color.fx / depth.fx * decimate))


@dataclass(frozen=True, slots=True)
class Registration:
    """One depth frame mapped into its color camera (arrays the depth image's shape)."""

    points: np.ndarray
    """(h, w, 3) float32: each depth pixel's point in the depth camera (metres; 0 = no depth)."""
    u: np.ndarray
    """(h, w) float32: where the point lands in the color image (NaN: no depth)."""
    v: np.ndarray
    zc: np.ndarray
    """(h, w) float32: its depth in the color camera (metres)."""
    valid: np.ndarray
    """(h, w) bool: has depth."""
    visible: np.ndarray
    """(h, w) bool: has depth, lands inside the color image and is not occluded there."""
    occluded: np.ndarray
    """(h, w) bool: inside the color image but not visible: hidden there by a nearer surface,
    or on the near side of a depth edge (a rim, whose color pixel may be the surface behind)."""


def _check(depth: np.ndarray, calib: Calibration, rays: np.ndarray | None) -> np.ndarray:
    if calib.depth is None or calib.color is None or calib.depth_to_color is None:
        raise UsageError(
            f"device {calib.device_id} has no depth-to-color calibration; registration needs "
            "both cameras' intrinsics and the transform between them"
        )
    d = calib.depth
    if depth.ndim != 2 or depth.shape != (d.height, d.width):
        raise UsageError(
            f"depth {depth.shape} does not match the calibration's {d.width}x{d.height}"
        )
    table = rays if rays is not None else ray_table(d)
    check_table(table, d.width, d.height)
    return table


def _rims(z: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Depth pixels on the near side of a depth edge: a 4-neighbour lies farther than the
    tolerance. Their point is the rim of a surface, and the color pixel it lands on is as likely
    the surface behind (under a pixel of the silhouette), so they take no color."""
    far = np.where(valid, z - tolerance(z), -np.inf).astype(np.float32)
    zz = np.where(valid, z, np.inf).astype(np.float32)
    rim = np.zeros(z.shape, bool)
    rim[:, :-1] |= far[:, 1:] > zz[:, :-1]
    rim[:, 1:] |= far[:, :-1] > zz[:, 1:]
    rim[:-1, :] |= far[1:, :] > zz[:-1, :]
    rim[1:, :] |= far[:-1, :] > zz[1:, :]
    return rim & valid


def register(
    depth: np.ndarray, calib: Calibration, rays: np.ndarray | None = None, decimate: int = 1
) -> Registration:
    """Map *depth* (the device's units) into the color camera with the occlusion test; with
    *decimate* n, every n-th depth pixel of every n-th row."""
    table = _check(depth, calib, rays)
    if decimate != 1:
        if not 1 <= decimate <= 16:
            raise UsageError(f"decimate must be 1..16, got {decimate}")
        depth, table = depth[::decimate, ::decimate], table[::decimate, ::decimate]
    c = calib.color
    ext = calib.depth_to_color
    assert c is not None and ext is not None and calib.depth is not None
    z = depth.astype(np.float32) * np.float32(calib.depth_units)
    valid = depth > 0
    pts = np.empty((*depth.shape, 3), np.float32)
    np.multiply(table[..., 0], z, out=pts[..., 0])
    np.multiply(table[..., 1], z, out=pts[..., 1])
    pts[..., 2] = z
    q = ext.apply(pts)
    zc = q[..., 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = np.where(valid & (zc > 0), 1.0 / zc, np.nan).astype(np.float32)
    xd, yd = distort(q[..., 0] * inv, q[..., 1] * inv, c.distortion)
    u = xd * np.float32(c.fx) + np.float32(c.cx)
    v = yd * np.float32(c.fy) + np.float32(c.cy)
    with np.errstate(invalid="ignore"):
        inside = valid & (u >= -0.5) & (u < c.width - 0.5) & (v >= -0.5) & (v < c.height - 0.5)
    visible = inside.copy()
    if inside.any():
        cell = splat_cell(calib.depth, c, decimate)
        gw, gh = math.ceil(c.width / cell) + 2, math.ceil(c.height / cell) + 2
        ui, vi, zi = u[inside], v[inside], zc[inside]
        # the 2x2 cells around each point (the grid has a border of one cell on each side)
        cu0 = np.floor(ui / cell - 0.5).astype(np.int64) + 1
        cv0 = np.floor(vi / cell - 0.5).astype(np.int64) + 1
        zbuf = np.full(gw * gh, np.inf, np.float32)
        for du in (0, 1):
            for dv in (0, 1):
                np.minimum.at(zbuf, (cv0 + dv) * gw + cu0 + du, zi)
        own = (
            (np.floor(vi / cell).astype(np.int64) + 1) * gw
            + np.floor(ui / cell).astype(np.int64)
            + 1
        )
        visible[inside] = zi <= zbuf[own] + tolerance(zbuf[own])
        visible &= ~_rims(z, valid)
    return Registration(
        points=pts,
        u=u,
        v=v,
        zc=zc,
        valid=valid,
        visible=visible,
        occluded=inside & ~visible,
    )
