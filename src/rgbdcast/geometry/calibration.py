"""A device's calibration: what makes its pixels 3-D, in a form that travels (pure, no I/O).

How this works: a :class:`Calibration` holds the depth camera's and the color camera's
intrinsics (pinhole plus Brown-Conrady distortion, :class:`~rgbdcast.frames.Intrinsics`), the
rigid transform from the depth camera to the color camera, the depth units, where the numbers
came from, and the names of per-pixel tables the device can send on request. Every camera uses
OpenCV's optical axes (x right, y down, z forward, metres) and is named
``<device>_depth_optical_frame`` / ``<device>_color_optical_frame``. The infrared stream is the
depth camera. ``depth_to_color`` maps a point in the depth camera to the color camera:
``p_color = R @ p_depth + t`` (the convention of OpenCV's ``stereoCalibrate`` and RealSense's
``get_extrinsics_to``).

:meth:`Calibration.to_dict` is the wire form (``docs/protocol.md``, version
:data:`CALIBRATION_VERSION`); :meth:`Calibration.from_dict` refuses anything malformed or
implausible with :class:`~rgbdcast.errors.UsageError`, and so does the constructor.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import UsageError
from ..frames import Intrinsics, StreamKind

__all__ = [
    "CALIBRATION_VERSION",
    "DISTORTION_MODELS",
    "Calibration",
    "Extrinsics",
    "check_intrinsics",
    "optical_frame",
    "view_frame",
    "VIEW_IN_DEPTH",
]

CALIBRATION_VERSION = 1
DISTORTION_MODELS = {"plumb_bob": (0, 4, 5), "rational_polynomial": (0, 8)}
"""Distortion models we carry and how many coefficients each may have (OpenCV's order:
k1 k2 p1 p2 [k3 [k4 k5 k6]]; none means no distortion)."""


def optical_frame(device_id: str, kind: StreamKind) -> str:
    """The frame id of a stream's pixels: ``<device>_color_optical_frame`` for color,
    ``<device>_depth_optical_frame`` for depth and infrared (one camera). Recordings, Foxglove
    and the calibration all name frames this way."""
    return f"{device_id}_{'color' if kind is StreamKind.color else 'depth'}_optical_frame"


def view_frame(device_id: str) -> str:
    """``<device>_view``: the depth camera turned to ROS's body convention (x forward, y left,
    z up), a child of its optical frame, for 3-D viewers whose up is +z to follow."""
    return f"{device_id}_view"


VIEW_IN_DEPTH = (0.5, -0.5, 0.5, 0.5)
"""The rotation (x, y, z, w) placing :func:`view_frame` in the depth optical frame: its x is the
optical z, its y the optical -x, its z the optical -y; no translation."""


MAX_BASELINE_M = 1.0
"""Two cameras of one device further apart than this are refused as implausible."""
TABLE_DEPTH_TO_CAMERA = "depth_to_camera_space"
"""Kinect v2's exact per-pixel model: for every depth pixel, the (x/z, y/z) of its ray."""


def _finite(name: str, values: Any) -> None:
    arr = np.asarray(values, dtype=np.float64)
    if not np.all(np.isfinite(arr)):
        raise UsageError(f"calibration: {name} must be finite numbers, got {values!r}")


def check_intrinsics(name: str, intr: Intrinsics) -> None:
    """Refuse intrinsics no real camera has: NaN, focal lengths far off the image size, a
    principal point outside the image, an unknown distortion model or huge coefficients."""
    _finite(f"{name} intrinsics", (intr.fx, intr.fy, intr.cx, intr.cy, *intr.distortion))
    w, h = intr.width, intr.height
    if not (0.05 * w <= intr.fx <= 100 * w and 0.05 * h <= intr.fy <= 100 * h):
        raise UsageError(
            f"calibration: {name} focal lengths fx={intr.fx:g}, fy={intr.fy:g} are implausible "
            f"for a {w}x{h} image"
        )
    if not (0 <= intr.cx <= w and 0 <= intr.cy <= h):
        raise UsageError(
            f"calibration: {name} principal point ({intr.cx:g}, {intr.cy:g}) lies outside "
            f"the {w}x{h} image"
        )
    counts = DISTORTION_MODELS.get(intr.model)
    if counts is None:
        raise UsageError(
            f"calibration: {name} distortion model {intr.model!r} is not one of "
            f"{', '.join(DISTORTION_MODELS)}"
        )
    if len(intr.distortion) not in counts:
        raise UsageError(
            f"calibration: {name} {intr.model} takes {' or '.join(map(str, counts))} "
            f"coefficients, got {len(intr.distortion)}"
        )
    if any(abs(k) > 1000 for k in intr.distortion):
        raise UsageError(f"calibration: {name} distortion {intr.distortion} is implausible")


@dataclass(frozen=True, slots=True)
class Extrinsics:
    """A rigid transform ``p_to = R @ p_from + t``: rotation row-major, translation in metres."""

    rotation: tuple[float, ...] = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
    translation: tuple[float, float, float] = (0.0, 0.0, 0.0)

    def __post_init__(self) -> None:
        rot = tuple(float(v) for v in np.asarray(self.rotation, dtype=np.float64).ravel())
        tr = tuple(float(v) for v in np.asarray(self.translation, dtype=np.float64).ravel())
        if len(rot) != 9 or len(tr) != 3:
            raise UsageError("calibration: a transform needs a 3x3 rotation and 3 translations")
        _finite("rotation", rot)
        _finite("translation", tr)
        r = np.asarray(rot).reshape(3, 3)
        err = float(np.abs(r @ r.T - np.eye(3)).max())
        if err > 1e-4 or np.linalg.det(r) < 0:
            raise UsageError(
                f"calibration: the rotation is not orthonormal (|R R^T - I| = {err:.2g}"
                f", det {np.linalg.det(r):.3g}); send a proper rotation matrix"
            )
        object.__setattr__(self, "rotation", rot)
        object.__setattr__(self, "translation", (tr[0], tr[1], tr[2]))

    @property
    def R(self) -> np.ndarray:
        return np.asarray(self.rotation, dtype=np.float64).reshape(3, 3)

    @property
    def t(self) -> np.ndarray:
        return np.asarray(self.translation, dtype=np.float64)

    def matrix(self) -> np.ndarray:
        """The 4x4 homogeneous matrix."""
        m = np.eye(4)
        m[:3, :3] = self.R
        m[:3, 3] = self.t
        return m

    def quaternion(self) -> tuple[float, float, float, float]:
        """The rotation as a unit quaternion ``(x, y, z, w)``, w >= 0 (ROS and Foxglove order)."""
        m = self.R
        tr = m[0, 0] + m[1, 1] + m[2, 2]
        if tr > 0:
            s = 2.0 * np.sqrt(tr + 1.0)
            q = (
                (m[2, 1] - m[1, 2]) / s,
                (m[0, 2] - m[2, 0]) / s,
                (m[1, 0] - m[0, 1]) / s,
                0.25 * s,
            )
        else:
            i = int(np.argmax(np.diag(m)))
            j, k = (i + 1) % 3, (i + 2) % 3
            s = 2.0 * np.sqrt(1.0 + m[i, i] - m[j, j] - m[k, k])
            v = [0.0, 0.0, 0.0]
            v[i] = 0.25 * s
            v[j] = (m[j, i] + m[i, j]) / s
            v[k] = (m[k, i] + m[i, k]) / s
            q = (v[0], v[1], v[2], (m[k, j] - m[j, k]) / s)
        n = float(np.linalg.norm(q))
        sign = -1.0 if q[3] < 0 else 1.0
        x, y, z, w = (float(c) * sign / n for c in q)
        return (x, y, z, w)

    def inverse(self) -> Extrinsics:
        r = self.R.T
        return Extrinsics(tuple(r.ravel()), tuple(-r @ self.t))  # type: ignore[arg-type]

    def apply(self, points: np.ndarray) -> np.ndarray:
        """Transform (..., 3) points; float32 in, float32 out."""
        r = self.R.astype(np.float32)
        return points @ r.T + self.t.astype(np.float32)

    @classmethod
    def from_matrix(cls, rotation: Any, translation: Any) -> Extrinsics:
        return cls(tuple(np.asarray(rotation, np.float64).ravel()), tuple(np.ravel(translation)))  # type: ignore[arg-type]

    def to_dict(self) -> dict[str, Any]:
        r = self.rotation
        return {
            "rotation": [list(r[0:3]), list(r[3:6]), list(r[6:9])],
            "translation": list(self.translation),
        }

    @classmethod
    def from_dict(cls, d: Any) -> Extrinsics:
        if not isinstance(d, dict):
            raise UsageError(
                "calibration: a transform must be an object with rotation and translation"
            )
        try:
            rot = np.asarray(d["rotation"], dtype=np.float64)
            tr = np.asarray(d["translation"], dtype=np.float64)
        except (KeyError, TypeError, ValueError) as exc:
            raise UsageError(f"calibration: bad transform: {exc}") from None
        if rot.shape not in ((3, 3), (9,)) or tr.shape != (3,):
            raise UsageError("calibration: a transform needs a 3x3 rotation and 3 translations")
        return cls.from_matrix(rot, tr)


@dataclass(frozen=True, slots=True, kw_only=True)
class Calibration:
    """Everything a consumer needs to turn one device's depth and color into 3-D."""

    device_id: str
    depth: Intrinsics | None = None
    color: Intrinsics | None = None
    depth_to_color: Extrinsics | None = None
    depth_units: float = 0.001
    """Metres per depth unit (1 mm for Kinect v2 and the mock, often 1 mm for RealSense)."""
    source: str = ""
    """Where the numbers came from: ``mock ground truth``, ``kinect2 sdk fit``, ``factory``..."""
    fit: dict[str, float] = field(default_factory=dict)
    """For a fitted model: ``rms_px``, ``max_px`` and ``samples`` of the fit."""
    tables: tuple[str, ...] = ()
    """Per-pixel tables the device sends on request (``depth_to_camera_space``)."""
    _revision: str = field(default="", init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.device_id, str) or not self.device_id:
            raise UsageError("calibration: needs the device id")
        for name, intr in (("depth", self.depth), ("color", self.color)):
            if intr is not None:
                check_intrinsics(name, intr)
        if not (math.isfinite(self.depth_units) and 1e-6 <= self.depth_units <= 1.0):
            raise UsageError(
                f"calibration: depth_units {self.depth_units!r} m per unit is implausible"
            )
        if self.depth_to_color is not None:
            if self.depth is None or self.color is None:
                raise UsageError("calibration: depth_to_color needs both cameras' intrinsics")
            base = float(np.linalg.norm(self.depth_to_color.t))
            if base > MAX_BASELINE_M:
                raise UsageError(
                    f"calibration: the color camera is {base:.2f} m from the depth camera; "
                    f"one device's cameras are at most {MAX_BASELINE_M:g} m apart (is the "
                    "translation in millimetres? it must be in metres)"
                )
        for k, v in self.fit.items():
            _finite(f"fit {k}", v)
        unknown = set(self.tables) - {TABLE_DEPTH_TO_CAMERA}
        if unknown:
            raise UsageError(f"calibration: unknown tables {sorted(unknown)}")
        text = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        object.__setattr__(
            self, "_revision", hashlib.blake2s(text.encode(), digest_size=6).hexdigest()
        )

    def __hash__(self) -> int:
        return hash(self._revision)

    # -- names --------------------------------------------------------------------------------
    @property
    def depth_frame(self) -> str:
        return optical_frame(self.device_id, StreamKind.depth)

    @property
    def color_frame(self) -> str:
        return optical_frame(self.device_id, StreamKind.color)

    def frame_of(self, kind: StreamKind) -> str:
        """The optical frame a stream's pixels are in (infrared is the depth camera)."""
        return optical_frame(self.device_id, kind)

    def intrinsics_of(self, kind: StreamKind) -> Intrinsics | None:
        return self.color if kind is StreamKind.color else self.depth

    @property
    def registrable(self) -> bool:
        """True when color can be mapped onto depth and back."""
        return self.depth_to_color is not None

    @property
    def revision(self) -> str:
        """A short digest of the wire form: equal calibrations have equal revisions (frame
        headers carry it, so a receiver knows which calibration a frame was taken under)."""
        return self._revision

    # -- the wire form --------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        cams: dict[str, Any] = {}
        if self.depth is not None:
            cams["depth"] = {
                "frame_id": self.depth_frame,
                "streams": ["depth", "infrared"],
                "intrinsics": self.depth.to_dict(),
            }
        if self.color is not None:
            cams["color"] = {
                "frame_id": self.color_frame,
                "streams": ["color"],
                "intrinsics": self.color.to_dict(),
            }
        d: dict[str, Any] = {
            "version": CALIBRATION_VERSION,
            "device": self.device_id,
            "axes": "opencv",
            "depth_units": self.depth_units,
            "cameras": cams,
            "source": self.source,
        }
        if self.depth_to_color is not None:
            d["depth_to_color"] = self.depth_to_color.to_dict()
        if self.fit:
            d["fit"] = dict(self.fit)
        if self.tables:
            d["tables"] = list(self.tables)
        return d

    @classmethod
    def from_dict(cls, d: Any) -> Calibration:
        """Read the wire form; :class:`UsageError` naming the problem if it is not one."""
        if not isinstance(d, dict):
            raise UsageError("calibration must be a JSON object")
        version = d.get("version")
        if version != CALIBRATION_VERSION:
            hint = ": upgrade rgbdcast here" if isinstance(version, int) and version > 1 else ""
            raise UsageError(f"calibration version {version!r} is not {CALIBRATION_VERSION}{hint}")
        if d.get("axes", "opencv") != "opencv":
            raise UsageError(f"calibration axes {d.get('axes')!r}: only 'opencv' is defined")
        cams = d.get("cameras", {})
        if not isinstance(cams, dict):
            raise UsageError("calibration: cameras must be an object")

        def cam(name: str) -> Intrinsics | None:
            c = cams.get(name)
            if c is None:
                return None
            if not isinstance(c, dict) or not isinstance(c.get("intrinsics"), dict):
                raise UsageError(f"calibration: camera {name!r} needs intrinsics")
            return Intrinsics.from_dict(c["intrinsics"])

        ext = d.get("depth_to_color")
        fit = d.get("fit", {})
        tables = d.get("tables", [])
        if not isinstance(fit, dict) or not isinstance(tables, list):
            raise UsageError("calibration: fit must be an object and tables a list")
        try:
            units = float(d.get("depth_units", 0.001))
            fitf = {str(k): float(v) for k, v in fit.items()}
        except (TypeError, ValueError) as exc:
            raise UsageError(f"calibration: {exc}") from None
        return cls(
            device_id=str(d.get("device", "")),
            depth=cam("depth"),
            color=cam("color"),
            depth_to_color=Extrinsics.from_dict(ext) if ext is not None else None,
            depth_units=units,
            source=str(d.get("source", "")),
            fit=fitf,
            tables=tuple(str(t) for t in tables),
        )
