"""The mock RGB-D device: a deterministic synthetic room at a steady frame rate.

``MockDevice`` renders :class:`~rgbdcast.devices.scene.Scene` on its capture thread (or, with
``prerender=N``, renders N framesets once and loops them, so benchmarks measure serving and not
rendering). ``MockKinect`` is streamkinect2's name for it, with ``unique_kinect_id`` and the
``on_depth_frame`` signal carrying a :class:`DepthFrame`.
"""

from __future__ import annotations

import functools
import itertools
import math
import threading
import time
import zlib
from collections.abc import Iterable
from typing import Any, NamedTuple

import numpy as np
from blinker import Signal

from ..errors import UsageError
from ..frames import Frame, StreamKind
from ..geometry.calibration import Calibration, Extrinsics
from .base import StreamInfo, ThreadedDevice, make_frameset, wait_until
from .scene import KINECT_COLOR, KINECT_DEPTH, Scene, mock_depth_to_color, scaled, world_pose
from .yuy2 import bgr_to_yuy2, yuy2_source

__all__ = ["DepthFrame", "MockDevice", "MockKinect"]

_ids = itertools.count()


class DepthFrame(NamedTuple):
    """A single frame of depth data (streamkinect2's type).

    ``data`` is a buffer of C-ordered uint16 millimetres; ``shape`` is ``(width, height)``.
    """

    data: memoryview
    shape: tuple[int, int]


def _parse_streams(streams: Iterable[StreamKind | str] | None) -> tuple[StreamKind, ...]:
    if streams is None:
        return tuple(StreamKind)
    try:
        kinds = tuple(dict.fromkeys(StreamKind(s) for s in streams))
    except ValueError as exc:
        raise UsageError(f"{exc}; streams are {', '.join(k.value for k in StreamKind)}") from None
    if not kinds:
        raise UsageError("a mock device needs at least one stream")
    return kinds


@functools.lru_cache(maxsize=1)
def default_board_texture() -> tuple[np.ndarray, float, float]:
    """The default ChArUco board (``devices.board.DEFAULT_BOARD``, drawn by OpenCV once at 120
    pixels a square and shipped as zlib-compressed bits, so the mock needs no OpenCV): its
    texture (uint8 0/255), width and height in metres."""
    from importlib import resources

    raw = resources.files("rgbdcast.devices").joinpath("board_default.bits.z").read_bytes()
    bits = np.unpackbits(np.frombuffer(zlib.decompress(raw), np.uint8))[: 600 * 840]
    tex = np.ascontiguousarray(bits.reshape(600, 840) * np.uint8(255))
    tex.flags.writeable = False
    return tex, 0.7, 0.5


class MockDevice(ThreadedDevice):
    """A virtual Kinect-like camera showing a moving room with a person.

    >>> with MockDevice(streams=["depth"], fps=30) as dev:
    ...     dev.id.startswith("mock")
    True
    """

    kind = "mock"

    on_depth_frame = Signal()
    """streamkinect2 signal: ``handler(device, depth_frame=DepthFrame)`` for every depth frame."""

    def __init__(
        self,
        device_id: str | None = None,
        *,
        name: str | None = None,
        streams: Iterable[StreamKind | str] | None = None,
        fps: float = 30.0,
        color_size: tuple[int, int] = (1920, 1080),
        depth_size: tuple[int, int] = (512, 424),
        prerender: int = 0,
        max_frames: int | None = None,
        seed: int = 0,
        pose: tuple[float, float, float, float, float, float] | None = None,
        board: bool = False,
        color_layout: str = "bgr",
    ) -> None:
        super().__init__()
        if color_layout not in ("bgr", "yuy2"):
            raise UsageError(f"the mock's color layout is bgr or yuy2, not {color_layout!r}")
        self.color_layout = color_layout
        """``yuy2``: color frames come as a Kinect v2's raw frame does (YUY2, decoded only if
        read; :mod:`.yuy2`)."""
        if not 0 < fps <= 100_000:
            raise UsageError(f"fps must be in (0, 100000], got {fps}")
        for w, h in (color_size, depth_size):
            if not (8 <= w <= 8192 and 8 <= h <= 8192):
                raise UsageError(f"resolution {w}x{h} out of range")
        self.id = device_id or f"mock{next(_ids)}"
        self.name = name or f"Mock Kinect ({self.id})"
        self.fps = float(fps)
        self.kinds = _parse_streams(streams)
        self.prerender = max(0, int(prerender))
        self.max_frames = max_frames
        self._depth_intr = scaled(KINECT_DEPTH, *depth_size)
        self._color_intr = scaled(KINECT_COLOR, *color_size)
        rot, tr = mock_depth_to_color()
        self._seed, self._board = seed, board
        self._place(pose)
        self._calibration = Calibration(
            device_id=self.id,
            depth=self._depth_intr,
            color=self._color_intr,
            depth_to_color=Extrinsics.from_matrix(rot, tr),
            depth_units=0.001,
            source="mock ground truth",
        )
        self._cache: list[list[Frame]] = []
        self._index = 0
        self._t0 = 0
        self.shared_time = pose is not None
        """A posed (multi-view) mock's scene runs on the wall clock, shared by every mock on
        this host in any process: cameras started at different moments see the person where it
        is when they capture, as real cameras of one room do. Unposed, frame *i* shows the
        scene at ``i / fps`` (what :meth:`render` returns)."""
        self._phase = 0

    @property
    def unique_kinect_id(self) -> str:
        """streamkinect2 name of :attr:`id`."""
        return self.id

    @property
    def streams(self) -> dict[StreamKind, StreamInfo]:
        info = {
            StreamKind.color: StreamInfo(
                kind=StreamKind.color,
                width=self._color_intr.width,
                height=self._color_intr.height,
                fps=self.fps,
                dtype="|u1",
                units="bgr8",
                intrinsics=self._color_intr,
            ),
            StreamKind.depth: StreamInfo(
                kind=StreamKind.depth,
                width=self._depth_intr.width,
                height=self._depth_intr.height,
                fps=self.fps,
                dtype="<u2",
                units="mm",
                intrinsics=self._depth_intr,
            ),
            StreamKind.infrared: StreamInfo(
                kind=StreamKind.infrared,
                width=self._depth_intr.width,
                height=self._depth_intr.height,
                fps=self.fps,
                dtype="<u2",
                units="intensity",
                intrinsics=self._depth_intr,
            ),
            StreamKind.body: StreamInfo(
                kind=StreamKind.body,
                fps=self.fps,
                dtype="body",
                units="m",
                notes={"max_bodies": 6, "joints": 25},
            ),
        }
        return {k: info[k] for k in self.kinds}

    def describe(self) -> dict[str, Any]:
        extra = {"pose": list(self.pose)} if any(self.pose) else {}
        return {**super().describe(), "body_tracking": StreamKind.body in self.kinds, **extra}

    def calibration(self) -> Calibration:
        """The exact geometry the scene is rendered with."""
        return self._calibration

    def _place(self, pose: tuple[float, ...] | None) -> None:
        p = tuple(float(v) for v in pose) if pose is not None else (0.0,) * 6
        if len(p) != 6 or not all(math.isfinite(v) for v in p):
            raise UsageError(f"a mock pose is X,Y,Z,RX,RY,RZ, got {pose}")
        self.pose = p
        """The depth camera's pose in the shared world: x, y, z (m), rx, ry, rz (degrees)."""
        self.rig_from_depth = world_pose(*self.pose)
        """The ground truth a rig calibration is measured against: ``(R, t)``, ``p_world = R
        @ p_depth + t`` (optical axes, metres)."""
        self._scene = Scene(
            self._depth_intr,
            self._color_intr,
            self._seed,
            mock_depth_to_color(),
            self.rig_from_depth,
            default_board_texture() if self._board else None,
        )

    def move(self, pose: tuple[float, float, float, float, float, float]) -> None:
        """Put the camera somewhere else while it runs (a bumped camera, for tests): the scene
        is drawn again from there (pre-rendered framesets too)."""
        self._place(pose)
        if self._cache:
            self._cache = [self.render(i) for i in range(self.prerender)]

    @property
    def scene(self) -> Scene:
        """The synthetic room (its ground truth: ``depth_m(t)``, ``color_and_z(t)``)."""
        return self._scene

    def render(self, index: int, scene_index: int | None = None) -> list[Frame]:
        """The frameset with number *index* (deterministic pixels; host time is when done),
        showing the scene at frame *scene_index* (default *index*)."""
        at = index if scene_index is None else scene_index
        t = at / self.fps
        data: dict[StreamKind, Any] = {}
        if StreamKind.color in self.kinds:
            color = self._scene.color(t)
            data[StreamKind.color] = (
                yuy2_source(bgr_to_yuy2(color), color.shape[1], color.shape[0])
                if self.color_layout == "yuy2"
                else color
            )
        if StreamKind.depth in self.kinds or StreamKind.infrared in self.kinds:
            depth = self._scene.depth(t, index)
            data[StreamKind.depth] = depth
            if StreamKind.infrared in self.kinds:
                data[StreamKind.infrared] = self._scene.infrared(depth)
        if StreamKind.body in self.kinds:
            data[StreamKind.body] = self._scene.bodies(t)
        return self._frameset(index, data)

    def _frameset(self, index: int, data: dict[StreamKind, Any]) -> list[Frame]:
        intr = {
            StreamKind.color: self._color_intr,
            StreamKind.depth: self._depth_intr,
            StreamKind.infrared: self._depth_intr,
        }
        ordered = {kind: data[kind] for kind in self.kinds}
        return make_frameset(self.id, index, ordered, intr, int(index * 1e9 / self.fps))

    def _open(self) -> None:
        if self.prerender and not self._cache:
            self._cache = [self.render(i) for i in range(self.prerender)]
        self._index = 0
        self._t0 = time.monotonic_ns()
        self._phase = int(time.time() * self.fps) if self.shared_time else 0

    def _capture(self, stop: threading.Event) -> list[Frame]:
        if self.max_frames is not None and self._index >= self.max_frames:
            stop.wait()
            return []
        period_ns = int(1e9 / self.fps)
        deadline = self._t0 + self._index * period_ns
        now = time.monotonic_ns()
        if now - deadline > period_ns // 2:  # fell behind: run late from here on, as a camera
            self._t0 += now - deadline  # would, and never send the next frame right after it
            deadline = now
        if not wait_until(deadline, stop):
            return []
        index = self._index
        self._index += 1
        at = index + self._phase
        if self._cache:
            cached = self._cache[at % len(self._cache)]
            frames = self._frameset(index, {f.kind: f.encoded or f.data for f in cached})
        else:
            frames = self.render(index, at)
        for f in frames:
            if f.kind is StreamKind.depth and bool(self.on_depth_frame.receivers):
                arr = f.array
                self.on_depth_frame.send(
                    self, depth_frame=DepthFrame(arr.data, (arr.shape[1], arr.shape[0]))
                )
        return frames


class MockKinect(MockDevice):
    """streamkinect2's ``MockKinect``: a :class:`MockDevice` with every stream.

    ``unique_kinect_id``, ``on_depth_frame``, ``start()``, ``stop()`` and the ``with`` statement
    behave as streamkinect2 documents them.
    """

    def __init__(self, device_id: str | None = None, **kwargs: Any) -> None:
        super().__init__(device_id, **kwargs)
