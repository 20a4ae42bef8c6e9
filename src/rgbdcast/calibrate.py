"""Extrinsic calibration of a rig with a ChArUco board (``rgbdcast calibrate``).

How this works: a :class:`~rgbdcast.rig.Rig` hands out framesets of every camera matched in
time; :class:`~rgbdcast.boardpose.BoardFinder` places the board in each camera's depth frame
(color corners, refined with the depth plane). Each rig frameset in which two cameras see the
board gives one view of their relative pose (``a_from_b = a_from_board @ board_from_b``); the
views of each pair are reduced to a consensus that rejects outliers
(:func:`~rgbdcast.geometry.poses.mean_pose`), and the cameras are chained from the first one
through the best-observed pairs, so cameras that never see the board at the same time are placed
through those that do. The rig frame is the first camera's depth optical frame.

:class:`Calibrator` is the bookkeeping (pure: sightings in, a rig file or a one-line
:class:`CalibrationError` out); :func:`calibrate` runs it against live servers.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import numpy as np

from .boardpose import MIN_CORNERS, BoardFinder, Sighting
from .devices.board import DEFAULT_BOARD, BoardSpec
from .errors import UsageError
from .frames import Frame, StreamKind
from .geometry.calibration import Extrinsics
from .geometry.camera import deproject
from .geometry.poses import PoseEstimate, chain_poses, invert, mean_pose
from .geometry.rigfile import RigCamera, RigFile
from .rig import Rig, RigFrameset, RigMember

__all__ = ["CalibrationError", "CameraProgress", "Calibrator", "calibrate"]

MIN_VIEWS = 5
"""Views of a pair needed before it places a camera."""
REFINE_FRAMESETS = 6
"""Rig framesets whose depth ``--refine`` averages (what moves between them is left out)."""
SAMPLES = 6
"""Color frames kept per camera that saw no board, to look for other dictionaries in."""
STILL_MM = 20.0
"""A depth pixel that changes more than this across those framesets is not static scene."""


class CalibrationError(UsageError):
    """Calibration cannot give a rig file; the message says what to change."""


@dataclass
class CameraProgress:
    """One camera during calibration."""

    key: str
    corners: int = 0
    """Board corners found in the latest frameset."""
    most_corners: int = 0
    most_markers: int = 0
    sightings: int = 0
    """Framesets in which its board pose was found."""
    placed: bool = False
    spread_mm: float | None = None
    """How much the views of its pose relative to :attr:`via` disagree (RMS)."""
    spread_deg: float | None = None
    via: str | None = None
    """The camera it is placed through (None: it is the rig frame, or not placed yet)."""
    reprojection: list[float] = field(default_factory=list)


class Calibrator:
    """Sightings in, rig file out. ``add`` one rig frameset's sightings at a time (keys:
    ``"<endpoint> <device>"``, the first key of *cameras* is the rig frame); ``solve``."""

    def __init__(self, cameras: Sequence[str], board: BoardSpec) -> None:
        if not cameras:
            raise UsageError("calibration needs one camera or more")
        self.cameras = list(cameras)
        self.board = board
        self.framesets = 0
        self.useful = 0
        """Framesets in which two cameras (or the only one) saw the board."""
        self.progress = {k: CameraProgress(k) for k in self.cameras}
        self._pairs: dict[tuple[str, str], list[np.ndarray]] = {}
        self.centres: dict[tuple[str, str], list[tuple[np.ndarray, np.ndarray]]] = {}
        """Per pair of cameras, the board's centre in each one's depth frame, per view."""
        self._estimates: dict[tuple[str, str], PoseEstimate] = {}
        self._stale = True
        self.order: list[str] = []
        """The cameras in the order they were placed (after :meth:`solve`)."""

    def add(self, sightings: Mapping[str, Sighting]) -> None:
        self.framesets += 1
        posed = {}
        for key in self.cameras:
            s = sightings.get(key)
            p = self.progress[key]
            p.corners = 0 if s is None else s.corners
            if s is None:
                continue
            p.most_corners = max(p.most_corners, s.corners)
            p.most_markers = max(p.most_markers, s.markers)
            if s.depth_from_board is not None:
                p.sightings += 1
                p.reprojection.append(s.reprojection_px)
                posed[key] = s.depth_from_board
        keys = [k for k in self.cameras if k in posed]
        mid = np.array([*(v / 2 for v in self.board.size_m), 0.0, 1.0])

        def centre(m: np.ndarray) -> np.ndarray:
            return (m @ mid)[:3]

        for i, a in enumerate(keys):
            for b in keys[i + 1 :]:
                self._pairs.setdefault((a, b), []).append(posed[a] @ invert(posed[b]))
                self.centres.setdefault((a, b), []).append((centre(posed[a]), centre(posed[b])))
        if len(keys) >= min(2, len(self.cameras)):
            self.useful += 1
        self._stale = True
        self._update()

    def _update(self) -> dict[str, tuple[np.ndarray, str | None]]:
        """The pair estimates and the chain (recomputed when views were added)."""
        if self._stale:
            self._estimates = {
                pair: mean_pose(views)
                for pair, views in self._pairs.items()
                if len(views) >= MIN_VIEWS
            }
            self._stale = False
        placed = chain_poses(self.cameras, self._estimates, self.cameras[0])
        for key in self.cameras:
            p = self.progress[key]
            p.placed = key in placed and (len(self.cameras) == 1 or p.sightings >= MIN_VIEWS)
            via = placed[key][1] if key in placed else None
            est = self._edge(key, via) if via is not None else None
            p.via = via
            p.spread_mm = est.spread_mm if est is not None else None
            p.spread_deg = est.spread_deg if est is not None else None
        return placed

    def _edge(self, a: str, b: str) -> PoseEstimate | None:
        return self._estimates.get((a, b)) or self._estimates.get((b, a))

    def ready(self) -> bool:
        """Every camera placed."""
        self._update()
        return all(p.placed for p in self.progress.values())

    def solve(self, other_dictionary: Callable[[str], str | None] | None = None) -> RigFile:
        """The rig file, or :class:`CalibrationError` naming what to change."""
        placed = self._update()
        for key in self.cameras:
            self._check_saw_board(key, other_dictionary)
        for (a, b), est in self._estimates.items():
            if not est.consistent:
                raise CalibrationError(
                    f"the views of {a} and {b} disagree: only {est.inliers} of {est.views} "
                    f"agree, others are up to {est.worst_mm:.0f} mm / {est.worst_deg:.1f}° off "
                    "(was a camera bumped, or the board moved faster than the cameras are in "
                    "sync?); keep the cameras still and run calibrate again"
                )
        lost = [k for k in self.cameras if k not in placed]
        if lost:
            raise CalibrationError(
                f"{', '.join(lost)} never saw the board at the same time as a camera already "
                f"placed ({MIN_VIEWS} framesets needed): hold the board where it and one of the "
                "others both see it"
            )
        self.order = list(placed)
        devices = {}
        for key in self.cameras:
            p = self.progress[key]
            devices[key] = RigCamera(
                Extrinsics.from_matrix(placed[key][0][:3, :3], placed[key][0][:3, 3]),
                reprojection_px=float(np.median(p.reprojection)) if p.reprojection else None,
                spread_mm=p.spread_mm,
                spread_deg=p.spread_deg,
            )
        return RigFile(
            devices=devices,
            board=self.board.to_dict(),
            created=datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            extra={
                "calibration": {
                    "framesets": self.framesets,
                    "useful": self.useful,
                    "placed_via": {k: p.via for k, p in self.progress.items()},
                }
            },
        )

    def _check_saw_board(self, key: str, other: Callable[[str], str | None] | None) -> None:
        p = self.progress[key]
        if p.sightings:
            return
        if p.most_corners > 0 or p.most_markers > 0:
            raise CalibrationError(
                f"{key} saw at most {p.most_corners} corners of the board ({MIN_CORNERS} "
                "needed): bring the board closer to it or turn it to face the camera"
            )
        found = other(key) if other is not None else None
        if found is not None:
            b = self.board
            fix = f"charuco:{b.cols}x{b.rows}:{b.square_m:g}:{b.marker_m:g}:{found}"
            raise CalibrationError(
                f"{key} sees ArUco markers of {found}, not of the board's {b.dictionary}: "
                f"run with --board {fix} (with your board's size)"
            )
        raise CalibrationError(
            f"no board in view of {key} in {self.framesets} framesets: put the board "
            f"({self.board}; `rgbdcast calibrate --print-board board.png` prints it) where "
            "the cameras see it"
        )


def calibrate(
    members: Iterable[tuple[str, str] | RigMember],
    board: BoardSpec | str = DEFAULT_BOARD,
    *,
    framesets: int = 30,
    timeout_s: float = 60.0,
    on_progress: Callable[[Calibrator], None] | None = None,
    connect_timeout: float = 5.0,
    refine: bool = False,
) -> tuple[RigFile, list[str]]:
    """Calibrate the cameras *members* (``(endpoint, device)``) with *board*: collect rig
    framesets until every camera is placed and *framesets* useful ones were seen (or
    *timeout_s* passed), then solve; with *refine*, align the cameras' depth with ICP
    (:mod:`rgbdcast.icp`). Returns the rig file and a line per refined camera;
    :class:`CalibrationError` says what went wrong."""
    spec = BoardSpec.parse(board) if isinstance(board, str) else board
    finder = BoardFinder(spec)
    started = time.monotonic()
    with Rig(members, (StreamKind.depth, StreamKind.color), connect_timeout=connect_timeout) as rig:
        cal = Calibrator([m.key for m in rig.members], spec)
        samples: dict[str, deque[Frame]] = {}
        while time.monotonic() - started < timeout_s:
            if cal.useful >= framesets and cal.ready():
                break
            try:
                rs = rig.get(timeout=1.0)
            except TimeoutError:
                continue
            cal.add(_sightings(rig, finder, rs.frames, samples, cal.framesets))
            if on_progress is not None:
                on_progress(cal)

        def other(key: str) -> str | None:
            for frame in samples.get(key, ()):  # a person may hide the board in some of them
                found = finder.other_dictionary(frame)
                if found is not None:
                    return found
            return None

        rig_file = cal.solve(other)
        if not refine:
            return rig_file, []
        from .icp import refine_rig

        clouds = _static_points(rig, [rig.get(timeout=5.0) for _ in range(REFINE_FRAMESETS)])
        missing = [k for k in cal.order if k not in clouds]
        if missing:
            raise CalibrationError(f"{', '.join(missing)} sent nothing to refine with")
        via = {k: p.via for k, p in cal.progress.items()}
        return refine_rig(rig_file, clouds, cal.order, via, cal.centres)


def _sightings(
    rig: Rig,
    finder: BoardFinder,
    frames: Mapping[RigMember, Mapping[StreamKind, Frame]],
    samples: dict[str, deque[Frame]],
    n: int,
) -> dict[str, Sighting]:
    """Each camera's sighting; every 5th frameset's color of a camera that saw no board is kept
    (the last few) to tell a wrong dictionary from no board at the end."""
    out = {}
    for member, fs in frames.items():
        client = rig.client_of(member)
        depth = fs[StreamKind.depth]
        geo: Any = client.calibration(member.device, depth.calibration)
        rays = None
        if geo.tables:
            rays = client.calibration_table(member.device)
        seen = out[member.key] = finder.find(fs, geo, rays)
        if seen.corners == 0 and n % 5 == 0:
            samples.setdefault(member.key, deque(maxlen=SAMPLES)).append(fs[StreamKind.color])
    return out


def _static_points(rig: Rig, sets: Sequence[RigFrameset]) -> dict[str, np.ndarray]:
    """Each camera's static scene in its depth frame: the pixels with depth in every frameset
    and no more than ``STILL_MM`` of change, at their mean depth (people moving between the
    cameras' captures would pull ICP off; averaging lowers the noise)."""
    out = {}
    for member in rig.members:
        depths = [rs.frames[member][StreamKind.depth] for rs in sets if member in rs.frames]
        if not depths:
            continue
        client = rig.client_of(member)
        geo = client.calibration(member.device, depths[-1].calibration)
        rays = client.calibration_table(member.device) if geo.tables else None
        stack = np.stack([d.array for d in depths]).astype(np.float32)
        still_units = STILL_MM / 1000.0 / geo.depth_units
        static = np.all(stack > 0, axis=0) & (np.ptp(stack, axis=0) <= still_units)
        mean = np.where(static, stack.mean(axis=0), 0.0)
        pts = deproject(mean, rays if rays is not None else geo.depth, geo.depth_units)
        out[member.key] = pts[static]
    return out
