"""One camera's geometry: pixels to rays and back, with Brown-Conrady distortion (pure numpy).

Everything here is in OpenCV's optical axes (x right, y down, z forward, metres). A *ray table*
holds, for every pixel, the undistorted normalised coordinates ``(x/z, y/z)`` of the ray through
its centre, so that a pixel with depth ``z`` is the point ``(rx * z, ry * z, z)``. It comes from
the intrinsics (:func:`ray_table`, cached per intrinsics) or, where the sensor has an exact
per-pixel model, from the device (Kinect v2's depth-to-camera-space table).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from ..errors import UsageError
from ..frames import Intrinsics

__all__ = ["deproject", "distort", "project", "ray_table", "undistort"]


def distort(
    x: np.ndarray, y: np.ndarray, coeffs: tuple[float, ...]
) -> tuple[np.ndarray, np.ndarray]:
    """Apply OpenCV's distortion (k1 k2 p1 p2 [k3 [k4 k5 k6]]) to normalised coordinates."""
    if not any(coeffs):
        return x, y
    k = tuple(coeffs) + (0.0,) * (8 - len(coeffs))
    k1, k2, p1, p2, k3, k4, k5, k6 = k
    r2 = x * x + y * y
    radial = (1 + r2 * (k1 + r2 * (k2 + r2 * k3))) / (1 + r2 * (k4 + r2 * (k5 + r2 * k6)))
    xy = x * y
    xd = x * radial + 2 * p1 * xy + p2 * (r2 + 2 * x * x)
    yd = y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * xy
    return xd, yd


def undistort(
    xd: np.ndarray, yd: np.ndarray, coeffs: tuple[float, ...], iterations: int = 20
) -> tuple[np.ndarray, np.ndarray]:
    """Invert :func:`distort` by fixed-point iteration (as OpenCV's ``undistortPoints``)."""
    if not any(coeffs):
        return xd, yd
    x, y = xd.copy(), yd.copy()
    for _ in range(iterations):
        dx, dy = distort(x, y, coeffs)
        x = x - (dx - xd)
        y = y - (dy - yd)
    return x, y


@lru_cache(maxsize=32)
def ray_table(intr: Intrinsics) -> np.ndarray:
    """``(height, width, 2)`` float32: each pixel's undistorted ``(x/z, y/z)`` (read-only)."""
    u = (np.arange(intr.width, dtype=np.float64) - intr.cx) / intr.fx
    v = (np.arange(intr.height, dtype=np.float64) - intr.cy) / intr.fy
    xd, yd = np.meshgrid(u, v)
    x, y = undistort(xd, yd, intr.distortion)
    table = np.stack([x, y], axis=-1).astype(np.float32)
    table.flags.writeable = False
    return table


def check_table(table: np.ndarray, width: int, height: int) -> None:
    if table.shape != (height, width, 2) or table.dtype != np.float32:
        raise UsageError(
            f"a ray table for {width}x{height} depth is float32 ({height}, {width}, 2), "
            f"got {table.dtype} {table.shape}"
        )


def deproject(depth: np.ndarray, rays: np.ndarray | Intrinsics, units: float) -> np.ndarray:
    """``(h, w, 3)`` float32 points (metres) of a depth image; a pixel without depth (0) is
    the point (0, 0, 0)."""
    table = ray_table(rays) if isinstance(rays, Intrinsics) else rays
    if depth.ndim != 2:
        raise UsageError(f"depth must be a 2-D image, got shape {depth.shape}")
    check_table(table, depth.shape[1], depth.shape[0])
    z = depth.astype(np.float32) * np.float32(units)
    out = np.empty((*depth.shape, 3), np.float32)
    np.multiply(table[..., 0], z, out=out[..., 0])
    np.multiply(table[..., 1], z, out=out[..., 1])
    out[..., 2] = z
    return out


def project(points: np.ndarray, intr: Intrinsics) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates ``(u, v)`` of (..., 3) points in the camera; z <= 0 gives NaN."""
    z = points[..., 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = np.where(z > 0, 1.0 / z, np.nan).astype(points.dtype)
    x, y = distort(points[..., 0] * inv, points[..., 1] * inv, intr.distortion)
    return x * np.float32(intr.fx) + np.float32(intr.cx), y * np.float32(intr.fy) + np.float32(
        intr.cy
    )
