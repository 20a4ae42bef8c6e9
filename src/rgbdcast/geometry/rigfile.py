"""The rig file: where each camera of a rig sits in one shared frame (pure: dicts in and out).

``docs/rig.md`` is the format. In short, JSON: ``{"version": 1, "frame": "rig",
"created": "<ISO time>", "board": {...} | null, "devices": {"<control endpoint> <device id>":
{"rig_from_depth": [[4 x 4]], "reprojection_px": float | null, "spread_mm": float | null,
"spread_deg": float | null}}}``; ``rig_from_depth`` maps a point of the device's depth optical
frame to the rig frame (row-major, metres): ``p_rig = M @ [p_depth, 1]``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import UsageError
from .calibration import Extrinsics

__all__ = ["RIG_VERSION", "RigCamera", "RigFile"]

RIG_VERSION = 1


@dataclass(frozen=True)
class RigCamera:
    """One device's place in the rig and how well it was found."""

    rig_from_depth: Extrinsics
    reprojection_px: float | None = None
    spread_mm: float | None = None
    spread_deg: float | None = None

    def to_dict(self) -> dict[str, Any]:
        m = self.rig_from_depth.matrix()
        return {
            "rig_from_depth": [[float(v) for v in row] for row in m],
            "reprojection_px": self.reprojection_px,
            "spread_mm": self.spread_mm,
            "spread_deg": self.spread_deg,
        }

    @classmethod
    def from_dict(cls, key: str, d: Any) -> RigCamera:
        if not isinstance(d, dict):
            raise UsageError(f"rig file: device {key!r} must be an object")
        try:
            m = np.asarray(d["rig_from_depth"], np.float64)
        except (KeyError, TypeError, ValueError) as exc:
            raise UsageError(f"rig file: device {key!r} needs rig_from_depth ({exc})") from None
        if m.shape != (4, 4) or not np.allclose(m[3], [0, 0, 0, 1]):
            raise UsageError(f"rig file: {key!r} rig_from_depth must be a 4x4 rigid transform")
        try:
            ext = Extrinsics.from_matrix(m[:3, :3], m[:3, 3])
        except UsageError as exc:
            raise UsageError(f"rig file: {key!r}: {exc}") from None

        def num(name: str) -> float | None:
            v = d.get(name)
            if v is None:
                return None
            if not isinstance(v, (int, float)) or not math.isfinite(v):
                raise UsageError(f"rig file: {key!r} {name} must be a number")
            return float(v)

        return cls(ext, num("reprojection_px"), num("spread_mm"), num("spread_deg"))


@dataclass(frozen=True)
class RigFile:
    """Every camera of a rig, keyed ``"<control endpoint> <device id>"``."""

    devices: dict[str, RigCamera]
    board: dict[str, Any] | None = None
    created: str = ""
    frame: str = "rig"
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": RIG_VERSION,
            "frame": self.frame,
            "created": self.created,
            "board": self.board,
            "devices": {k: cam.to_dict() for k, cam in self.devices.items()},
            **self.extra,
        }

    @classmethod
    def from_dict(cls, d: Any) -> RigFile:
        if not isinstance(d, dict):
            raise UsageError("a rig file is a JSON object")
        if d.get("version") != RIG_VERSION:
            raise UsageError(f"rig file version {d.get('version')!r} is not {RIG_VERSION}")
        devices = d.get("devices")
        if not isinstance(devices, dict) or not devices:
            raise UsageError("a rig file needs devices")
        for key in devices:
            if not isinstance(key, str) or " " not in key:
                raise UsageError(f"rig file: {key!r} is not '<control endpoint> <device id>'")
        board = d.get("board")
        if board is not None and not isinstance(board, dict):
            raise UsageError("rig file: board must be an object or null")
        known = {"version", "frame", "created", "board", "devices"}
        return cls(
            devices={k: RigCamera.from_dict(k, v) for k, v in devices.items()},
            board=board,
            created=str(d.get("created", "")),
            frame=str(d.get("frame", "rig")),
            extra={k: v for k, v in d.items() if k not in known},
        )

    def camera(self, endpoint: str, device: str) -> RigCamera:
        cam = self.devices.get(f"{endpoint} {device}")
        if cam is None:
            known = ", ".join(self.devices)
            raise UsageError(f"the rig file has no '{endpoint} {device}' (it has: {known})")
        return cam
