"""The Kinect v2 SDK's coordinate mapper, turned into a portable calibration on the sensor's host.

How this works: the SDK's ``ICoordinateMapper`` knows how depth pixels map to 3-D and 3-D to color
pixels, but publishes no color intrinsics and no depth-to-color transform, so a consumer on
another machine cannot register the streams. On the host we ask it once:

- ``GetDepthFrameToCameraSpaceTable``: for each depth pixel, the ray ``(X/Z, Y/Z)`` in camera
  space. It is the exact depth model; it is sent to clients on request (~1.7 MB).
- ``MapCameraPointsToColorSpace`` on points along the rays of a grid of depth pixels at several
  depths, then a pinhole + Brown-Conrady color camera and the depth-to-color transform are
  fitted to what it answers (:mod:`.camerafit`), and checked on a denser grid it never saw.

Camera space is the SDK's: X to the sensor's left (image right), Y up, Z forward; the optical
axes we publish are ``(X, -Y, Z)``. Calls follow pykinect2's comtypes conventions (ctypes arrays
of ``_CameraSpacePoint`` / ``_ColorSpacePoint``, out-parameters returned). Unverified on a real
Kinect here: tested against the SDK-shaped fake in tests/test_kinect2.py.
"""

from __future__ import annotations

import ctypes
from typing import Any

import numpy as np

from ..errors import DeviceError
from ..frames import Intrinsics
from ..geometry.calibration import TABLE_DEPTH_TO_CAMERA, Calibration
from .camerafit import ColorFit, fit_color_camera, sample_grid

__all__ = [
    "COLOR_GUESS",
    "CameraSpacePoint",
    "ColorSpacePoint",
    "PointF",
    "calibrate",
    "camera_to_color",
    "depth_table",
]

DEPTH_W, DEPTH_H = 512, 424
COLOR_W, COLOR_H = 1920, 1080
COLOR_GUESS = Intrinsics(width=COLOR_W, height=COLOR_H, fx=1060.0, fy=1060.0, cx=959.5, cy=539.5)
"""Where the fit starts: a Kinect v2 color camera's nominal intrinsics."""
FIT_DEPTHS = (0.6, 1.0, 1.6, 2.5, 4.0)
CHECK_DEPTHS = (0.8, 2.0, 3.3)


class CameraSpacePoint(ctypes.Structure):
    _fields_ = [("x", ctypes.c_float), ("y", ctypes.c_float), ("z", ctypes.c_float)]


class ColorSpacePoint(ctypes.Structure):
    _fields_ = [("x", ctypes.c_float), ("y", ctypes.c_float)]


class PointF(ctypes.Structure):
    _fields_ = [("X", ctypes.c_float), ("Y", ctypes.c_float)]


def _struct(name: str, fallback: Any) -> Any:
    """pykinect2's structure type where it is installed (comtypes checks argument types), ours
    (the same layout) where it is not."""
    try:
        from pykinect2 import PyKinectV2

        return getattr(PyKinectV2, name)
    except ImportError:
        return fallback


def depth_table(mapper: Any) -> np.ndarray:
    """The SDK's depth-to-camera-space table as rays in optical axes, float32 (424, 512, 2)."""
    try:
        got = mapper.GetDepthFrameToCameraSpaceTable()
    except Exception as exc:
        raise DeviceError(f"GetDepthFrameToCameraSpaceTable failed: {exc}") from exc
    count, entries = got if isinstance(got, tuple) else (DEPTH_W * DEPTH_H, got)
    if int(count) != DEPTH_W * DEPTH_H:
        raise DeviceError(f"the depth-to-camera-space table has {count} entries, not 512*424")
    flat = ctypes.cast(entries, ctypes.POINTER(ctypes.c_float))
    table = np.ctypeslib.as_array(flat, shape=(DEPTH_H, DEPTH_W, 2)).astype(np.float32)
    table[..., 1] *= -1.0  # camera space Y is up; optical y is down
    if not np.isfinite(table).all() or np.abs(table).max() > 10:
        raise DeviceError("the depth-to-camera-space table holds no plausible rays yet")
    return table


def camera_to_color(mapper: Any, points: np.ndarray) -> np.ndarray:
    """Color pixels (N, 2) of optical-axes points (N, 3), by ``MapCameraPointsToColorSpace``
    (points it cannot map come back infinite)."""
    n = len(points)
    cam_t = _struct("_CameraSpacePoint", CameraSpacePoint)
    col_t = _struct("_ColorSpacePoint", ColorSpacePoint)
    cams = (cam_t * n)()
    src = np.ctypeslib.as_array(ctypes.cast(cams, ctypes.POINTER(ctypes.c_float)), shape=(n, 3))
    src[:] = points * np.array([1.0, -1.0, 1.0])  # to camera space
    cols = (col_t * n)()
    try:
        mapper.MapCameraPointsToColorSpace(ctypes.c_uint(n), cams, ctypes.c_uint(n), cols)
    except Exception as exc:
        raise DeviceError(f"MapCameraPointsToColorSpace failed: {exc}") from exc
    flat = ctypes.cast(cols, ctypes.POINTER(ctypes.c_float))
    return np.ctypeslib.as_array(flat, shape=(n, 2)).astype(np.float64)


def calibrate(
    device_id: str, mapper: Any, depth: Intrinsics
) -> tuple[Calibration, np.ndarray, ColorFit]:
    """Ask the mapper, fit the color camera, and return the calibration, its table, the fit."""
    table = depth_table(mapper)
    points = sample_grid(table, 16, FIT_DEPTHS, offset=8)
    check = sample_grid(table, 7, CHECK_DEPTHS, offset=3)
    fit = fit_color_camera(
        points,
        camera_to_color(mapper, points),
        COLOR_W,
        COLOR_H,
        COLOR_GUESS,
        check=(check, camera_to_color(mapper, check)),
    )
    cal = Calibration(
        device_id=device_id,
        depth=depth,
        color=fit.color,
        depth_to_color=fit.depth_to_color,
        depth_units=0.001,
        source="kinect2 sdk: depth from GetDepthCameraIntrinsics and its table; color fitted "
        "to MapCameraPointsToColorSpace",
        fit=fit.report(),
        tables=(TABLE_DEPTH_TO_CAMERA,),
    )
    return cal, table, fit
