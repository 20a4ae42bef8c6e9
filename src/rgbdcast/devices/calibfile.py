"""Calibration files a user gives (``serve --calibration FILE``) for sources that know none.

Two forms are read:

- **rgbdcast JSON**: the wire form (docs/protocol.md, "Calibration"), e.g. a device's
  ``calibration.json`` from ``rgbdcast save``. Its device id is replaced by the served one.
- **OpenCV FileStorage** (``.yml``, ``.yaml``, ``.xml``, or ``.json`` holding an ``opencv_storage``
  document), as OpenCV's calibration sample and ``cv2.FileStorage`` write it: ``camera_matrix``
  (or ``K`` / ``cameraMatrix``), ``distortion_coefficients`` (or ``D`` / ``dist_coeffs`` /
  ``distCoeffs``), and ``image_width`` / ``image_height`` (else the stream's size is assumed).
  It describes one color camera.

A camera that delivers another size than the file was made for gets the intrinsics scaled, if
the aspect ratio is the same; otherwise the calibration is refused with a message saying so.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UsageError
from ..frames import Intrinsics
from ..geometry.calibration import Calibration, check_intrinsics
from .scene import scaled

__all__ = ["fit_to_size", "load_calibration_file"]


def load_calibration_file(path: str | Path, device_id: str) -> Calibration:
    """Read *path*; :class:`UsageError` with one readable line if it is not a calibration."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"--calibration {p}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise UsageError(f"--calibration {p}: not a text file") from None
    if p.suffix.lower() == ".json" and "opencv_storage" not in text:
        try:
            doc = json.loads(text)
        except ValueError as exc:
            raise UsageError(f"--calibration {p}: not JSON ({exc})") from None
        if isinstance(doc, dict):
            doc = {**doc, "device": device_id}
            cams = doc.get("cameras")
            if isinstance(cams, dict):  # frame ids follow the served device's id
                for name, cam in cams.items():
                    if isinstance(cam, dict):
                        cam["frame_id"] = f"{device_id}_{name}_optical_frame"
        try:
            return Calibration.from_dict(doc)
        except UsageError as exc:
            raise UsageError(f"--calibration {p}: {exc}") from None
    return _opencv(p, device_id)


def _node(fs: Any, *names: str) -> Any:
    for name in names:
        node = fs.getNode(name)
        if not node.empty():
            return node
    return None


def _opencv(p: Path, device_id: str) -> Calibration:
    import cv2

    try:
        fs = cv2.FileStorage(str(p), cv2.FILE_STORAGE_READ)
    except cv2.error as exc:
        raise UsageError(f"--calibration {p}: OpenCV cannot read it ({exc.err})") from None
    if not fs.isOpened():
        raise UsageError(f"--calibration {p}: OpenCV cannot read it (YAML, XML or JSON)")
    try:
        k_node = _node(fs, "camera_matrix", "K", "cameraMatrix")
        if k_node is None:
            raise UsageError(
                f"--calibration {p}: no camera_matrix (or K) in it; write one with "
                "cv2.FileStorage as OpenCV's calibration sample does"
            )
        k = np.asarray(k_node.mat(), np.float64)
        d_node = _node(fs, "distortion_coefficients", "D", "dist_coeffs", "distCoeffs")
        dist = np.ravel(d_node.mat()) if d_node is not None else np.zeros(0)
        w_node, h_node = _node(fs, "image_width", "width"), _node(fs, "image_height", "height")
        size = (
            (int(w_node.real()), int(h_node.real()))
            if w_node is not None and h_node is not None
            else None
        )
    finally:
        fs.release()
    if k.shape != (3, 3):
        raise UsageError(f"--calibration {p}: camera_matrix must be 3x3, got {k.shape}")
    coeffs = tuple(float(v) for v in dist)
    if len(coeffs) > 5 and not any(coeffs[5:]):
        coeffs = coeffs[:5]
    model = "rational_polynomial" if len(coeffs) == 8 else "plumb_bob"
    w, h = size or (round(float(2 * k[0, 2] + 1)), round(float(2 * k[1, 2] + 1)))
    try:
        color = Intrinsics(
            width=w,
            height=h,
            fx=float(k[0, 0]),
            fy=float(k[1, 1]),
            cx=float(k[0, 2]),
            cy=float(k[1, 2]),
            distortion=coeffs,
            model=model,
        )
        check_intrinsics("color", color)
        return Calibration(
            device_id=device_id,
            color=color,
            source=f"file {p.name}"
            + ("" if size else " (no image size in it: assumed from the principal point)"),
        )
    except UsageError as exc:
        raise UsageError(f"--calibration {p}: {exc}") from None


def fit_to_size(cal: Calibration, width: int, height: int) -> Calibration:
    """*cal*'s color camera for a stream of *width* x *height*: scaled if only the resolution
    differs, :class:`UsageError` if the aspect ratio does too."""
    c = cal.color
    if c is None or (c.width, c.height) == (width, height):
        return cal
    if abs(c.width / c.height - width / height) > 0.01:
        raise UsageError(
            f"the calibration is for {c.width}x{c.height} but the camera delivers "
            f"{width}x{height} (another aspect ratio): calibrate at this size"
        )
    s = scaled(c, width, height)
    color = Intrinsics(
        width=s.width,
        height=s.height,
        fx=s.fx,
        fy=s.fy,
        cx=s.cx,
        cy=s.cy,
        distortion=c.distortion,
        model=c.model,
    )
    return Calibration(
        device_id=cal.device_id,
        depth=cal.depth,
        color=color,
        depth_to_color=cal.depth_to_color if cal.depth is not None else None,
        depth_units=cal.depth_units,
        source=f"{cal.source}, scaled from {c.width}x{c.height}",
        fit=dict(cal.fit),
        tables=cal.tables,
    )
