"""Fit a portable camera model to a sensor's own mapping (OpenCV; used on the sensor's host).

How this works: some SDKs map 3-D points to color pixels but publish no color intrinsics and no
depth-to-color transform (the Kinect v2's ``ICoordinateMapper``), or publish a model of their
own (libfreenect2's polynomials). Given points in the depth camera's optical frame and the color
pixels the sensor maps them to, :func:`fit_color_camera` fits a pinhole camera with Brown-Conrady
distortion (k1 k2 p1 p2 k3) and the rigid transform from the depth camera, with
``cv2.calibrateCamera`` seeded by *guess* (a single non-planar view needs one). It reports the
fit's reprojection error on the samples and, separately, on *check* points it was not fitted to.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import DeviceError
from ..frames import Intrinsics
from ..geometry.calibration import Extrinsics
from ..geometry.camera import project

__all__ = ["ColorFit", "fit_color_camera", "sample_grid"]


@dataclass(frozen=True)
class ColorFit:
    color: Intrinsics
    depth_to_color: Extrinsics
    rms_px: float
    max_px: float
    samples: int
    check_max_px: float
    """The largest error on points the fit never saw (a denser grid): what a consumer gets."""

    def report(self) -> dict[str, float]:
        return {
            "rms_px": round(self.rms_px, 4),
            "max_px": round(self.max_px, 4),
            "check_max_px": round(self.check_max_px, 4),
            "samples": float(self.samples),
        }


def sample_grid(
    rays: np.ndarray, step: int, depths: tuple[float, ...], offset: int = 0
) -> np.ndarray:
    """Points (optical axes, metres) along the rays of every *step*-th pixel, at each depth."""
    sub = rays[offset::step, offset::step].reshape(-1, 2)
    return np.concatenate(
        [np.column_stack([sub[:, 0] * z, sub[:, 1] * z, np.full(len(sub), z)]) for z in depths]
    ).astype(np.float64)


def _inside(px: np.ndarray, width: int, height: int) -> np.ndarray:
    ok = np.all(np.isfinite(px), axis=1)
    with np.errstate(invalid="ignore"):
        ok &= (px[:, 0] >= 0) & (px[:, 0] <= width - 1) & (px[:, 1] >= 0)
        ok &= px[:, 1] <= height - 1
    return ok


def fit_color_camera(
    points: np.ndarray,
    pixels: np.ndarray,
    width: int,
    height: int,
    guess: Intrinsics,
    check: tuple[np.ndarray, np.ndarray] | None = None,
) -> ColorFit:
    """Fit the color camera that maps *points* (N, 3) of the depth camera to *pixels* (N, 2)."""
    import cv2

    ok = _inside(pixels, width, height) & np.all(np.isfinite(points), axis=1)
    if ok.sum() < 50:
        raise DeviceError(
            f"only {int(ok.sum())} of {len(points)} sampled points map into the color image: "
            "too few to fit a color camera (is the sensor running?)"
        )
    obj = points[ok].astype(np.float32).reshape(-1, 1, 3)
    img = pixels[ok].astype(np.float32).reshape(-1, 1, 2)
    k = np.array([[guess.fx, 0, guess.cx], [0, guess.fy, guess.cy], [0, 0, 1]], np.float64)
    dist = np.zeros(5)
    criteria = (cv2.TERM_CRITERIA_COUNT + cv2.TERM_CRITERIA_EPS, 200, 1e-12)
    flags = cv2.CALIB_USE_INTRINSIC_GUESS
    _, k_fit, d_fit, rvecs, tvecs = cv2.calibrateCamera(
        [obj], [img], (width, height), k, dist, flags=flags, criteria=criteria
    )
    k, dist = np.asarray(k_fit, np.float64), np.asarray(d_fit, np.float64)
    rot, _ = cv2.Rodrigues(rvecs[0])
    color = Intrinsics(
        width=width,
        height=height,
        fx=float(k[0, 0]),
        fy=float(k[1, 1]),
        cx=float(k[0, 2]),
        cy=float(k[1, 2]),
        distortion=tuple(float(d) for d in np.ravel(dist)[:5]),
        model="plumb_bob",
    )
    ext = Extrinsics.from_matrix(rot, np.ravel(tvecs[0]))

    def errors(p: np.ndarray, px: np.ndarray) -> np.ndarray:
        u, v = project(ext.apply(p.astype(np.float64)), color)
        return np.asarray(np.hypot(u - px[:, 0], v - px[:, 1]))

    err = errors(points[ok], pixels[ok])
    check_max = float(err.max())
    if check is not None:
        cp, cpx = check
        cok = _inside(cpx, width, height)
        check_max = float(errors(cp[cok], cpx[cok]).max())
    return ColorFit(
        color=color,
        depth_to_color=ext,
        rms_px=float(np.sqrt(np.mean(err**2))),
        max_px=float(err.max()),
        samples=int(ok.sum()),
        check_max_px=check_max,
    )
