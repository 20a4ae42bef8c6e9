"""libfreenect2's registration model, and a portable calibration fitted to it.

How this works: libfreenect2 reads the Kinect v2's factory parameters (``IrCameraParams``: a
Brown-Conrady depth camera; ``ColorCameraParams``: the color camera's ``fx cx cy``, cubic
polynomials ``mx_*`` / ``my_*`` and ``shift_d`` / ``shift_m``) and registers with its own model
(its ``Registration::depth_to_color``, described by @sh0 in libfreenect2 issue #41): for a pixel
``(x, y)`` of the *undistorted* depth image with depth ``z`` mm,

- ``mx = (x - cx_ir) * 0.01``, ``my = (y - cy_ir) * 0.01``;
- ``wx``, ``wy`` = the cubic polynomials in ``mx, my`` (ten terms each);
- color column = ``(wx / (fx_c * 0.002199) - shift_m / shift_d + shift_m / z) * fx_c + cx_c``;
- color row = ``wy / 0.002199 + cy_c`` (the row does not depend on depth).

:func:`depth_to_color` evaluates it; :func:`calibrate` samples it over a grid of pixels at
several depths and fits a pinhole + Brown-Conrady color camera and the depth-to-color transform
(:mod:`.camerafit`), reporting how far the fit is from the model over a denser grid.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..frames import Intrinsics
from ..geometry.calibration import Calibration
from ..geometry.camera import ray_table
from .camerafit import ColorFit, fit_color_camera

__all__ = ["POLY_TERMS", "calibrate", "depth_intrinsics", "depth_to_color"]

DEPTH_Q = 0.01
COLOR_Q = 0.002199
POLY_TERMS = ("x3y0", "x0y3", "x2y1", "x1y2", "x2y0", "x0y2", "x1y1", "x1y0", "x0y1", "x0y0")
"""The ten monomials of each polynomial, as libfreenect2 names its ``mx_*`` / ``my_*``."""
FIT_DEPTHS = (0.6, 1.0, 1.6, 2.5, 4.0)
CHECK_DEPTHS = (0.8, 2.0, 3.3)


def depth_intrinsics(ir: Any) -> Intrinsics:
    """The depth camera from ``IrCameraParams`` (libfreenect2's distortion is OpenCV's)."""
    return Intrinsics(
        width=512,
        height=424,
        fx=float(ir.fx),
        fy=float(ir.fy),
        cx=float(ir.cx),
        cy=float(ir.cy),
        distortion=tuple(float(v) for v in (ir.k1, ir.k2, ir.p1, ir.p2, ir.k3)),
        model="plumb_bob",
    )


def _poly(c: Any, axis: str, mx: np.ndarray, my: np.ndarray) -> np.ndarray:
    out = np.zeros_like(mx)
    for term in POLY_TERMS:
        px, py = int(term[1]), int(term[3])
        out = out + float(getattr(c, f"{axis}_{term}")) * mx**px * my**py
    return out


def depth_to_color(
    ir: Any, color: Any, x: np.ndarray, y: np.ndarray, z_mm: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Color pixels of undistorted depth pixels ``(x, y)`` at depths *z_mm*, by libfreenect2's
    model (float64 throughout)."""
    mx = (np.asarray(x, np.float64) - float(ir.cx)) * DEPTH_Q
    my = (np.asarray(y, np.float64) - float(ir.cy)) * DEPTH_Q
    wx, wy = _poly(color, "mx", mx, my), _poly(color, "my", mx, my)
    fx, shift_m, shift_d = float(color.fx), float(color.shift_m), float(color.shift_d)
    rx = wx / (fx * COLOR_Q) - shift_m / shift_d
    u = (rx + shift_m / np.asarray(z_mm, np.float64)) * fx + float(color.cx)
    v = wy / COLOR_Q + float(color.cy)
    return u, v


def _samples(ir: Any, color: Any, step: int, depths: tuple[float, ...], offset: int) -> Any:
    """Points (depth camera, optical axes, metres) along the rays of the undistorted depth
    image's pixels, and the color pixels libfreenect2's model puts them at."""
    pinhole = Intrinsics(width=512, height=424, fx=ir.fx, fy=ir.fy, cx=ir.cx, cy=ir.cy)
    rays = ray_table(pinhole)[offset::step, offset::step]
    ys, xs = np.mgrid[offset:424:step, offset:512:step]
    points, pixels = [], []
    for z in depths:
        points.append(
            np.column_stack(
                [rays[..., 0].ravel() * z, rays[..., 1].ravel() * z, np.full(rays[..., 0].size, z)]
            )
        )
        u, v = depth_to_color(ir, color, xs.ravel(), ys.ravel(), np.full(xs.size, z * 1000))
        pixels.append(np.column_stack([u, v]))
    return np.concatenate(points), np.concatenate(pixels)


def calibrate(device_id: str, ir: Any, color: Any) -> tuple[Calibration, ColorFit]:
    """The factory parameters as a portable calibration: the depth camera as it is, the color
    camera and transform fitted to libfreenect2's registration (its error in ``fit``)."""
    depth = depth_intrinsics(ir)
    guess = Intrinsics(
        width=1920,
        height=1080,
        fx=float(color.fx),
        fy=float(color.fy or color.fx),
        cx=float(color.cx),
        cy=float(color.cy),
    )
    pts, px = _samples(ir, color, 16, FIT_DEPTHS, 8)
    check = _samples(ir, color, 7, CHECK_DEPTHS, 3)
    fit = fit_color_camera(pts, px, 1920, 1080, guess, check=check)
    cal = Calibration(
        device_id=device_id,
        depth=depth,
        color=fit.color,
        depth_to_color=fit.depth_to_color,
        depth_units=0.001,
        source="libfreenect2 factory parameters: color fitted to its registration model",
        fit=fit.report(),
    )
    return cal, fit
