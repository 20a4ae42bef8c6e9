"""Where the calibration board is, seen by one RGB-D device: OpenCV finds it in color, its
depth pins it down.

A ChArUco board 3.5 m away spans a few hundred color pixels, and ``solvePnP`` alone then places
it within a few centimetres along the line of sight and a degree in tilt: not enough for a rig.
The depth camera sees the same board as a plane of thousands of points, so the pose is refined
with it: the board's plane is fitted to the depth points that the first pose puts on the board
(away from its edges), each corner is placed where its color ray meets that plane, and the
board's pose is the rigid fit of its known corners to those points. The result is the board's
pose in the device's *depth* optical frame, the frame the rig file places.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from .devices.base import require
from .devices.board import BoardSpec
from .frames import Frame, Intrinsics, StreamKind
from .geometry.calibration import Calibration
from .geometry.camera import deproject, project, undistort
from .geometry.poses import fit_plane, invert, rigid_fit

__all__ = ["BoardFinder", "Sighting"]

MIN_CORNERS = 6
"""Fewer inner corners than this give no usable pose."""
MIN_PLANE_POINTS = 50
"""Depth points on the board needed to refine a pose with the plane."""
COMMON_DICTIONARIES = (
    "DICT_4X4_250",
    "DICT_4X4_50",
    "DICT_5X5_250",
    "DICT_5X5_100",
    "DICT_5X5_50",
    "DICT_6X6_250",
    "DICT_6X6_50",
    "DICT_7X7_250",
    "DICT_ARUCO_ORIGINAL",
)
"""Tried when the board is not found, to tell a wrong ``--board`` dictionary from no board
(the larger of a family first: a smaller one holds the same first markers)."""


@dataclass(frozen=True)
class Sighting:
    """What one device saw of the board in one frameset."""

    corners: int
    """Inner corners found (0: no board)."""
    markers: int
    """Board markers found."""
    depth_from_board: np.ndarray | None = None
    """The board's pose in the depth optical frame (4x4, metres), or None if too few corners."""
    reprojection_px: float = float("nan")
    """RMS distance between the corners found and the refined pose's corners, in pixels of
    the image they were found in."""
    plane_points: int = 0
    """Depth points the pose was refined with (0: the image alone)."""
    plane_rms_mm: float = float("nan")
    stream: StreamKind = StreamKind.color
    """The image the board was found in (color, or infrared where color did not show it)."""


class BoardFinder:
    """Finds one board (a :class:`~rgbdcast.devices.board.BoardSpec`) in framesets."""

    def __init__(self, spec: BoardSpec) -> None:
        self.cv2 = require("cv2", "webcam")
        self.spec = spec
        self.board = spec.board()
        self.detector = self.cv2.aruco.CharucoDetector(self.board)

    def find(
        self, frames: Mapping[StreamKind, Frame], cal: Calibration, rays: np.ndarray | None = None
    ) -> Sighting:
        """The board in one frameset: in color, or where color does not show it, in infrared
        (the depth camera's own image); depth refines the pose. *rays* is the device's
        per-pixel depth table where it has one."""
        best = Sighting(0, 0)
        for kind in (StreamKind.color, StreamKind.infrared):
            frame, intr = frames.get(kind), cal.intrinsics_of(kind)
            if frame is None or intr is None:
                continue
            seen = self._find_in(frame, kind, intr, frames.get(StreamKind.depth), cal, rays)
            if seen.depth_from_board is not None:
                return seen
            if (seen.corners, seen.markers) > (best.corners, best.markers):
                best = seen
        if StreamKind.color not in frames and StreamKind.infrared not in frames:
            raise ValueError("finding the board needs the color or infrared stream")
        return best

    def _find_in(
        self,
        frame: Frame,
        kind: StreamKind,
        intr: Intrinsics,
        depth: Frame | None,
        cal: Calibration,
        rays: np.ndarray | None,
    ) -> Sighting:
        gray = self._gray(frame.array)
        corners, ids, _, marker_ids = self.detector.detectBoard(gray)
        n = 0 if ids is None else len(ids)
        markers = 0 if marker_ids is None else len(marker_ids)
        if n < MIN_CORNERS:
            return Sighting(n, markers, stream=kind)
        obj, img = self.board.matchImagePoints(corners, ids)
        obj, img = obj.reshape(-1, 3).astype(np.float64), img.reshape(-1, 2).astype(np.float64)
        cam_from_board = self._pnp(obj, img, intr)
        depth_from_cam = np.eye(4)  # infrared is the depth camera's image
        if kind is StreamKind.color and cal.depth_to_color is not None:
            depth_from_cam = invert(cal.depth_to_color.matrix())
        pose = depth_from_cam @ cam_from_board
        plane_points, plane_rms = 0, float("nan")
        if depth is not None and cal.depth is not None:
            refined = self._refine(pose, obj, img, depth, cal, rays, intr, depth_from_cam)
            if refined is not None:
                pose, plane_points, plane_rms = refined
        cam_pts = (invert(depth_from_cam) @ pose @ np.c_[obj, np.ones(len(obj))].T).T[:, :3]
        u, v = project(cam_pts, intr)
        err = float(np.sqrt(np.mean((u - img[:, 0]) ** 2 + (v - img[:, 1]) ** 2)))
        return Sighting(n, markers, pose, err, plane_points, plane_rms, kind)

    def other_dictionary(self, frame: Frame) -> str | None:
        """The first common ArUco dictionary (other than the board's) with 4 or more markers in
        *frame*: a ``--board`` naming the wrong dictionary is then what is wrong."""
        gray = self._gray(frame.array)
        aruco = self.cv2.aruco
        for name in COMMON_DICTIONARIES:
            if name == self.spec.dictionary:
                continue
            det = aruco.ArucoDetector(aruco.getPredefinedDictionary(getattr(aruco, name)))
            _, ids, _ = det.detectMarkers(gray)
            if ids is not None and len(ids) >= 4:
                return name
        return None

    # -- steps ----------------------------------------------------------------------------------
    def _gray(self, img: np.ndarray) -> np.ndarray:
        cv2 = self.cv2
        if img.dtype == np.uint16:  # infrared: falls with distance squared; compress, stretch
            top = float(np.percentile(img[img > 0], 99)) if np.any(img > 0) else 1.0
            return np.asarray(np.sqrt(np.clip(img / max(top, 1.0), 0, 1)) * 255, np.uint8)
        if img.ndim == 2:
            return img
        code = cv2.COLOR_BGRA2GRAY if img.shape[2] == 4 else cv2.COLOR_BGR2GRAY
        return cv2.cvtColor(img, code)

    def _pnp(self, obj: np.ndarray, img: np.ndarray, intr: Intrinsics) -> np.ndarray:
        cv2 = self.cv2
        k = np.array([[intr.fx, 0, intr.cx], [0, intr.fy, intr.cy], [0, 0, 1]], np.float64)
        dist = np.asarray(intr.distortion or (0.0,) * 5, np.float64)
        ok, rvec, tvec = cv2.solvePnP(obj, img, k, dist, flags=cv2.SOLVEPNP_IPPE)
        if not ok:
            ok, rvec, tvec = cv2.solvePnP(obj, img, k, dist)
        rvec, tvec = cv2.solvePnPRefineLM(obj, img, k, dist, rvec, tvec)
        out = np.eye(4)
        out[:3, :3] = cv2.Rodrigues(rvec)[0]
        out[:3, 3] = tvec.ravel()
        return out

    def _refine(
        self,
        pose: np.ndarray,
        obj: np.ndarray,
        img: np.ndarray,
        depth: Frame,
        cal: Calibration,
        rays: Any,
        intr: Intrinsics,
        depth_from_cam: np.ndarray,
    ) -> tuple[np.ndarray, int, float] | None:
        """The pose again, with the board's plane from depth (None: too little of it seen);
        *intr* and *depth_from_cam* are the camera the corners were found in."""
        assert cal.depth is not None
        pts = deproject(depth.array, rays if rays is not None else cal.depth, cal.depth_units)
        pts = pts.reshape(-1, 3)
        pts = pts[pts[:, 2] > 0].astype(np.float64)
        width, height = self.spec.size_m
        margin = self.spec.square_m * 0.5  # away from the board's edges (mixed pixels)
        xn = (img[:, 0] - intr.cx) / intr.fx
        yn = (img[:, 1] - intr.cy) / intr.fy
        xu, yu = undistort(xn, yn, intr.distortion)
        dirs = (depth_from_cam[:3, :3] @ np.c_[xu, yu, np.ones(len(xu))].T).T
        origin = depth_from_cam[:3, 3]
        kept, rms = 0, float("nan")
        for band in (0.15, 0.02):  # first near the color pose's plane, then near the fitted one
            local = (pts - pose[:3, 3]) @ pose[:3, :3]  # the depth points in board coordinates
            on = (
                (local[:, 0] > margin)
                & (local[:, 0] < width - margin)
                & (local[:, 1] > margin)
                & (local[:, 1] < height - margin)
                & (np.abs(local[:, 2]) < band)
            )
            if on.sum() < MIN_PLANE_POINTS:
                return None
            normal, offset, rms, kept = fit_plane(pts[on])
            along = dirs @ normal
            if np.any(np.abs(along) < 1e-6):
                return None
            s = (offset - origin @ normal) / along
            pose = rigid_fit(obj, origin + s[:, None] * dirs)
        return pose, kept, rms * 1000.0
