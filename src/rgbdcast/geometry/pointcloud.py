"""Products of a registration: color per depth pixel, depth per color pixel, colored clouds.

Colors of a cloud are RGB (what PLY, Open3D, Foxglove and ROS expect); images stay BGR as
OpenCV delivers them. Points are float32 metres in the depth camera's optical frame.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import UsageError
from .calibration import Calibration
from .register import Registration, _check, register, splat_cell

__all__ = ["PointCloud", "color_to_depth", "depth_to_color", "native", "point_cloud"]

_native: Any
try:
    from . import _native
except ImportError:  # built without a compiler: the numpy path gives the same cloud, slower
    _native = None


def native() -> bool:
    """True when the C path of :func:`point_cloud` was built."""
    return _native is not None


@dataclass(frozen=True, slots=True)
class PointCloud:
    """Points (float32 metres) and their colors (uint8 RGB).

    Unorganised: ``points`` is (N, 3) and ``colors`` (N, 3). Organised: both are (h, w, 3) in the
    depth image's layout, a pixel without a point is NaN and ``mask`` says which are points."""

    points: np.ndarray
    colors: np.ndarray
    frame_id: str = ""
    mask: np.ndarray | None = None

    @property
    def organized(self) -> bool:
        return self.points.ndim == 3

    def __len__(self) -> int:
        return int(self.mask.sum()) if self.mask is not None else len(self.points)


def _check_color(color: np.ndarray, calib: Calibration) -> np.ndarray:
    """*color* as a BGR image of the calibrated size (BGRA, as a Kinect v2 delivers it, loses
    its fourth channel); :class:`UsageError` if it is not one."""
    c = calib.color
    assert c is not None
    if (
        color.ndim != 3
        or color.shape[:2] != (c.height, c.width)
        or color.shape[2] not in (3, 4)
        or color.dtype != np.uint8
    ):
        raise UsageError(
            f"color {color.dtype} {color.shape} does not match the calibration's "
            f"{c.width}x{c.height} BGR image"
        )
    return np.ascontiguousarray(color[..., :3]) if color.shape[2] == 4 else color


def color_to_depth(reg: Registration, color: np.ndarray, calib: Calibration) -> np.ndarray:
    """``(h, w, 3)`` uint8 BGR: each depth pixel's color; black where it has none (no depth,
    outside the color image, or hidden there: ``reg.visible`` is False)."""
    color = _check_color(color, calib)
    out = np.zeros((*reg.u.shape, 3), np.uint8)
    vis = reg.visible
    ui = np.floor(reg.u[vis] + 0.5).astype(np.intp)
    vi = np.floor(reg.v[vis] + 0.5).astype(np.intp)
    out[vis] = color[vi, ui]
    return out


def depth_to_color(reg: Registration, calib: Calibration) -> np.ndarray:
    """``(hc, wc)`` uint16 in the device's depth units: the depth image as the color camera
    sees it. Each depth pixel fills its footprint; where two surfaces land, the nearer wins."""
    c, d = calib.color, calib.depth
    assert c is not None and d is not None
    cell = splat_cell(d, c)
    inside = reg.valid & ~np.isnan(reg.u)
    inside &= (reg.u >= -0.5) & (reg.u < c.width - 0.5) & (reg.v >= -0.5) & (reg.v < c.height - 0.5)
    u0 = np.rint(reg.u[inside]).astype(np.int64) - cell // 2
    v0 = np.rint(reg.v[inside]).astype(np.int64) - cell // 2
    z = reg.zc[inside]
    zbuf = np.full(c.width * c.height, np.inf, np.float32)
    for dv in range(cell):
        vv = v0 + dv
        okv = (vv >= 0) & (vv < c.height)
        for du in range(cell):
            uu = u0 + du
            ok = okv & (uu >= 0) & (uu < c.width)
            np.minimum.at(zbuf, vv[ok] * c.width + uu[ok], z[ok])
    units = np.float32(calib.depth_units)
    out = np.where(np.isinf(zbuf), 0, np.rint(zbuf / units))
    return np.clip(out, 0, 65535).astype(np.uint16).reshape(c.height, c.width)


Box = tuple[tuple[float, float, float], tuple[float, float, float]]


def _check_crop(
    z_range: tuple[float, float] | None, box: Box | None
) -> tuple[tuple[float, float] | None, tuple[np.ndarray, np.ndarray] | None]:
    """The crop asked for, checked: ``(near, far)`` and the box's two corners."""
    if z_range is not None:
        lo, hi = z_range
        if not (math.isfinite(lo) and math.isfinite(hi) and 0 <= lo < hi):
            raise UsageError(f"z_range needs 0 <= near < far, got {z_range}")
    corners = None
    if box is not None:
        lo3, hi3 = np.asarray(box[0], np.float32), np.asarray(box[1], np.float32)
        if lo3.shape != (3,) or hi3.shape != (3,) or not np.all(lo3 < hi3):
            raise UsageError(f"box needs ((xmin, ymin, zmin), (xmax, ymax, zmax)), got {box}")
        corners = (lo3, hi3)
    return z_range, corners


def _crop(
    points: np.ndarray, keep: np.ndarray, z_range: tuple[float, float] | None, box: Box | None
) -> np.ndarray:
    z_range, corners = _check_crop(z_range, box)
    if z_range is not None:
        z = points[..., 2]
        keep = keep & (z >= z_range[0]) & (z <= z_range[1])
    if corners is not None:
        keep = keep & np.all((points >= corners[0]) & (points <= corners[1]), axis=-1)
    return keep


def point_cloud(
    depth: np.ndarray,
    color: np.ndarray,
    calib: Calibration,
    *,
    rays: np.ndarray | None = None,
    organized: bool = False,
    decimate: int = 1,
    z_range: tuple[float, float] | None = None,
    box: tuple[tuple[float, float, float], tuple[float, float, float]] | None = None,
    keep_uncolored: bool = False,
    reference: bool = False,
) -> PointCloud:
    """A colored, registered, occlusion-tested cloud of one frameset's depth and color.

    A point whose color is unknown (hidden in the color camera, or outside it) is left out,
    or kept black with *keep_uncolored*. *z_range* (metres) and *box* (metres, depth camera)
    crop; *decimate* n keeps every n-th pixel of every n-th row. The C path runs where it was
    built; *reference* forces the numpy one (the same cloud: the tests compare them).
    """
    if _native is not None and not reference:
        return _cloud_c(
            depth, color, calib, rays, organized, decimate, z_range, box, keep_uncolored
        )
    reg = register(depth, calib, rays, decimate)
    color = _check_color(color, calib)
    keep = reg.valid if keep_uncolored else reg.visible
    keep = _crop(reg.points, keep, z_range, box)
    rgb = np.zeros((*reg.u.shape, 3), np.uint8)
    vis = reg.visible & keep
    ui = np.floor(reg.u[vis] + 0.5).astype(np.intp)
    vi = np.floor(reg.v[vis] + 0.5).astype(np.intp)
    rgb[vis] = color[vi, ui][:, ::-1]
    frame = calib.depth_frame
    if organized:
        pts = np.where(keep[..., None], reg.points, np.float32(np.nan))
        return PointCloud(pts, rgb, frame, keep)
    return PointCloud(reg.points[keep], rgb[keep], frame)


_local = threading.local()


def _scratch(floats: int) -> np.ndarray:
    """This thread's scratch for the C path, kept between calls (fresh pages cost page faults)."""
    buf: np.ndarray | None = getattr(_local, "scratch", None)
    if buf is None or buf.size < floats:
        buf = _local.scratch = np.empty(floats, np.float32)
    return buf


def _cloud_c(
    depth: np.ndarray,
    color: np.ndarray,
    calib: Calibration,
    rays: np.ndarray | None,
    organized: bool,
    decimate: int,
    z_range: tuple[float, float] | None,
    box: tuple[tuple[float, float, float], tuple[float, float, float]] | None,
    keep_uncolored: bool,
) -> PointCloud:
    table = _check(depth, calib, rays)
    color = _check_color(color, calib)
    c, d, ext = calib.color, calib.depth, calib.depth_to_color
    assert c is not None and d is not None and ext is not None
    if not 1 <= decimate <= 16:
        raise UsageError(f"decimate must be 1..16, got {decimate}")
    if decimate != 1:
        depth, table = depth[::decimate, ::decimate], table[::decimate, ::decimate]
    depth = np.ascontiguousarray(depth, np.uint16)
    table = np.ascontiguousarray(table, np.float32)
    color = np.ascontiguousarray(color)
    h, w = depth.shape
    k = (*c.distortion, *([0.0] * (8 - len(c.distortion))))
    flags = (1 if organized else 0) | (2 if keep_uncolored else 0) | (16 if any(k) else 0)
    checked_range, corners = _check_crop(z_range, box)
    zr = (0.0, 0.0)
    if checked_range is not None:
        zr, flags = (float(checked_range[0]), float(checked_range[1])), flags | 4
    bx = [0.0] * 6
    if corners is not None:
        bx, flags = [float(v) for v in (*corners[0], *corners[1])], flags | 8
    params = np.array(
        [
            *ext.rotation,
            *ext.translation,
            c.fx,
            c.fy,
            c.cx,
            c.cy,
            *k,
            c.width,
            c.height,
            calib.depth_units,
            splat_cell(d, c, decimate),
            *zr,
            *bx,
            flags,
        ],
        np.float64,
    )
    pts = np.empty((h, w, 3), np.float32)
    rgb = np.empty((h, w, 3), np.uint8)
    mask = np.empty((h, w), np.bool_)
    cell = splat_cell(d, c, decimate)
    cells = (math.ceil(c.width / cell) + 2) * (math.ceil(c.height / cell) + 2)
    n = _native.cloud(
        depth,
        w,
        h,
        table,
        params,
        color,
        pts,
        rgb,
        mask.view(np.uint8),
        _scratch(5 * h * w + w + (h * w + 3) // 4 + cells + 1),
    )
    if organized:
        return PointCloud(pts, rgb, calib.depth_frame, mask)
    return PointCloud(pts.reshape(-1, 3)[:n], rgb.reshape(-1, 3)[:n], calib.depth_frame)
