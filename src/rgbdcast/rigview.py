"""``rgbdcast view --rig rig.json``: the web viewer's backend for a calibrated rig. One 3-D view:
every camera's cloud fused in the rig frame, every skeleton placed there too, each camera's
frustum, and how far each camera's capture was from the rig frameset's time.

How this works: a :class:`~rgbdcast.rig.Rig` over the devices the rig file names (depth and
color, and bodies where every camera has them) hands out rig framesets on a thread of ours;
while a browser watches, each is offered to the viewer as ``rig/points``, and the fused cloud is
made (on the viewer's pool) only when the browser is ready for it: a slow browser gets fewer,
fresher clouds, and the rig's own newest-wins slots do the same upstream.
"""

from __future__ import annotations

import logging
import threading
import time
from functools import partial
from pathlib import Path
from typing import Any

from .errors import RgbdcastError, UsageError
from .frames import StreamKind
from .outlets.webcloud import DECIMATE
from .protocol.viewer import cloud_frame, rig_joints
from .rig import Rig, RigFrameset, RigMember, load_rig_file

__all__ = ["RigBackend"]

log = logging.getLogger(__name__)

KEY = "rig/points"


class RigBackend:
    """What ``rgbdcast view --rig`` shows: one rig, fused."""

    mode = "rig"
    name = "rgbdcast view --rig"

    def __init__(self, rig_file: str | Path) -> None:
        self.path = Path(rig_file)
        self.rig_file = load_rig_file(self.path)
        self.members = [RigMember(*key.split(" ", 1)) for key in self.rig_file.devices]
        self.viewer: Any = None
        self.rig: Rig | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rgbdcast-rigview", daemon=True)
        self._last = 0.0
        self._error = ""
        self._cameras: dict[RigMember, dict[str, Any]] = {}

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self, viewer: Any) -> None:
        """Connect to every camera of the rig (a one-line error if one is not there)."""
        self.viewer = viewer
        self.rig = self._open()
        try:
            self._describe(self.rig)
        except BaseException:
            self.rig.stop()
            raise
        self._thread.start()

    def _describe(self, rig: Rig) -> None:
        """Each camera's name, pose and depth intrinsics, for its frustum."""
        for m in self.members:
            place = self.rig_file.camera(m.endpoint, m.device).rig_from_depth
            intr = rig.client_of(m).calibration(m.device, timeout=5.0).depth
            self._cameras[m] = {
                "name": m.device if self._unique(m) else m.key,
                "pose": [float(v) for v in place.matrix().ravel()],
                "intr": None
                if intr is None
                else [intr.width, intr.height, intr.fx, intr.fy, intr.cx, intr.cy],
            }

    def _unique(self, m: RigMember) -> bool:
        return sum(o.device == m.device for o in self.members) == 1

    def _open(self) -> Rig:
        with_bodies = (StreamKind.depth, StreamKind.color, StreamKind.body)
        rig = Rig(self.members, with_bodies, rig_file=self.rig_file)
        try:
            rig.start()
            return rig
        except UsageError as exc:
            if "no body stream" not in str(exc):
                raise
        # a camera without body tracking: the rig shows clouds only
        rig = Rig(self.members, with_bodies[:2], rig_file=self.rig_file)
        rig.start()
        return rig

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(2.0)
        if self.rig is not None:
            self.rig.stop()

    # -- the viewer's questions -----------------------------------------------------------------
    def devices(self) -> list[dict[str, Any]]:
        live = time.monotonic() - self._last < 2.0
        state = "live" if live else (self._error or "waiting for the cameras")
        return [
            {
                "id": "rig",
                "name": f"{len(self.members)} cameras of {self.path.name}",
                "state": state,
                "streams": {"points": {"codec": "cloud", "decimate": DECIMATE}},
            }
        ]

    def stats(self) -> dict[str, dict[str, Any]]:
        rig = self.rig
        if rig is None:
            return {}
        per = rig.stats()
        return {KEY: {"dropped": sum(s["unmatched"] + s["replaced"] for s in per.values())}}

    def sources(self) -> list[dict[str, Any]]:
        return []

    def select(self, source: str, on: bool) -> None:
        return None

    # -- the rig's thread ---------------------------------------------------------------------
    def _run(self) -> None:
        rig = self.rig
        assert rig is not None
        n = 0
        while not self._stop.is_set():
            try:
                rs = rig.get(timeout=0.5)
            except TimeoutError:
                continue
            except RgbdcastError as exc:  # the rig stopped
                self._error = str(exc)
                return
            self._last = time.monotonic()
            n += 1
            if self.viewer is not None and self.viewer.watching:
                self.viewer.submit_made(KEY, n, partial(self._make, rs, n))

    def _make(self, rs: RigFrameset, seq: int, send_ms: float) -> bytes:
        """On the viewer's pool: the fused cloud, the skeletons and the cameras."""
        rig = self.rig
        assert rig is not None
        cloud = rig.point_cloud(rs, decimate=DECIMATE, timeout=3.0)
        joints: list[Any] = []
        cameras = []
        for m in self.members:
            frames = rs.frames.get(m)
            cam = dict(self._cameras[m])
            cam["present"] = frames is not None
            cam["skew_ms"] = (
                round((rs.times_ns[m] - rs.time_ns) / 1e6, 2) if m in rs.times_ns else None
            )
            cameras.append(cam)
            body = frames.get(StreamKind.body) if frames is not None else None
            if body is not None:
                place = self.rig_file.camera(m.endpoint, m.device).rig_from_depth.apply
                joints += rig_joints(body.bodies, place)
        extra = {"cameras": cameras, "skew_ms": round(rs.skew_ns / 1e6, 2)}
        return cloud_frame(
            "rig", seq, rs.time_ns, cloud.points, cloud.colors, joints, send_ms, extra
        )
