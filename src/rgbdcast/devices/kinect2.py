"""Kinect v2 on Windows through the Kinect for Windows SDK 2.0 (pykinect2's PyKinectRuntime).

How this works: the capture thread polls the runtime the way the SDK's samples do:
``has_new_<kind>_frame()`` then ``get_last_<kind>_frame()``, which returns a flat numpy array
(depth and infrared uint16 512*424). Color is taken as the sensor sends it: the runtime is
pykinect2's with its color handler replaced (:func:`with_raw_color`) so that each color frame is
copied raw (``IColorFrame::CopyRawFrameDataToArray``: YUY2, 2 bytes a pixel) instead of
converted to BGRA by the SDK; the frame goes on as YUY2 (:mod:`.yuy2`), and JPEG
and H.264 are encoded from it with no BGR in between. A runtime without that (another shape of
pykinect2) gives BGRA (``get_last_color_frame``), as before. Frames of one poll share a
frameset id. Body frames hold six bodies; tracked ones become :class:`Body` values with their
joints projected into color and depth pixels by the runtime's coordinate mapper
(``body_joints_to_color_space`` / ``body_joints_to_depth_space``). Depth intrinsics come from
the coordinate mapper's ``GetDepthCameraIntrinsics``; the whole calibration (the exact depth
table, a color camera and depth-to-color transform fitted to the mapper) from
:mod:`.kinect2map`, once the sensor runs.

Install (Windows only): the Kinect for Windows SDK 2.0, then pykinect2 from its official
repository's sources (the PyPI release fails on current Python with "AssertionError -80"):
``pip install comtypes`` and ``pip install git+https://github.com/Kinect/PyKinect2`` (see the
README). Unverified on real hardware here: tested against an SDK-shaped fake.
"""

from __future__ import annotations

import ctypes
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from ..errors import DeviceError, UsageError
from ..frames import Body, Frame, HandState, Intrinsics, Joint, JointType, StreamKind, TrackingState
from ..geometry.calibration import TABLE_DEPTH_TO_CAMERA, Calibration
from .base import StreamInfo, ThreadedDevice, make_frameset, require
from .camerafit import ColorFit
from .kinect2map import calibrate
from .yuy2 import yuy2_source

__all__ = ["Kinect2Device", "kinect_v2_streams", "with_raw_color"]

log = logging.getLogger(__name__)

# Kinect for Windows SDK 2.0 FrameSourceTypes
SOURCE_COLOR, SOURCE_INFRARED, SOURCE_DEPTH, SOURCE_BODY = 0x1, 0x2, 0x8, 0x20
COLOR_SIZE, DEPTH_SIZE = (1920, 1080), (512, 424)
COLOR_IMAGE_FORMAT_YUY2 = 5  # the SDK's ColorImageFormat_Yuy2: the sensor's raw format


def kinect_v2_streams(
    kinds: tuple[StreamKind, ...], depth_intr: Intrinsics | None, native_color: str
) -> dict[StreamKind, StreamInfo]:
    """What a Kinect v2 delivers, whichever driver reads it (the SDK or libfreenect2)."""
    info = {
        StreamKind.color: StreamInfo(
            kind=StreamKind.color,
            width=COLOR_SIZE[0],
            height=COLOR_SIZE[1],
            fps=30.0,
            dtype="|u1",
            units="bgr8",
            notes={"native": native_color},
        ),
        StreamKind.depth: StreamInfo(
            kind=StreamKind.depth,
            width=DEPTH_SIZE[0],
            height=DEPTH_SIZE[1],
            fps=30.0,
            dtype="<u2",
            units="mm",
            intrinsics=depth_intr,
        ),
        StreamKind.infrared: StreamInfo(
            kind=StreamKind.infrared,
            width=DEPTH_SIZE[0],
            height=DEPTH_SIZE[1],
            fps=30.0,
            dtype="<u2",
            units="intensity",
            intrinsics=depth_intr,
        ),
        StreamKind.body: StreamInfo(
            kind=StreamKind.body,
            fps=30.0,
            dtype="body",
            units="m",
            notes={"max_bodies": 6, "joints": 25},
        ),
    }
    return {k: info[k] for k in kinds}


def with_raw_color(base: type) -> type:
    """*base* (pykinect2's ``PyKinectRuntime``, or anything shaped like it) with its color
    handler replaced: each color frame is copied as the sensor sent it
    (``CopyRawFrameDataToArray``, YUY2; ``CopyConvertedFrameDataToArray`` to YUY2 should the raw
    format ever be another) into a buffer of its own, read with ``has_new_raw_color_frame()``
    and ``get_last_raw_color_frame()`` (bytes, 1920*1080*2)."""

    class RawColorRuntime(base):  # type: ignore[valid-type,misc]
        def __init__(self, sources: int) -> None:
            # before the base starts its event thread, which calls handle_color_arrived
            self._raw_lock = threading.Lock()
            self._raw = (ctypes.c_ubyte * (COLOR_SIZE[0] * COLOR_SIZE[1] * 2))()
            self._raw_count = self._raw_taken = 0
            super().__init__(sources)

        def handle_color_arrived(self, handle_index: int) -> None:
            reader = self._color_frame_reader
            event = reader.GetFrameArrivedEventData(self._handles[handle_index])
            try:
                frame = event.FrameReference.AcquireFrame()
            except Exception:  # the frame was already gone (the SDK's own samples skip it)
                return
            try:
                with self._raw_lock:
                    size = len(self._raw)
                    if frame.RawColorImageFormat == COLOR_IMAGE_FORMAT_YUY2:
                        frame.CopyRawFrameDataToArray(size, self._raw)
                    else:
                        frame.CopyConvertedFrameDataToArray(
                            size, self._raw, COLOR_IMAGE_FORMAT_YUY2
                        )
                    self._raw_count += 1
            except Exception as exc:
                log.debug("a Kinect v2 color frame could not be copied: %s", exc)
            finally:
                frame = None  # release the COM frame at once: the SDK holds few

        def has_new_raw_color_frame(self) -> bool:
            return bool(self._raw_count > self._raw_taken)

        def get_last_raw_color_frame(self) -> bytes:
            with self._raw_lock:
                self._raw_taken = self._raw_count
                return bytes(self._raw)  # our copy: the buffer is refilled by the next frame

    return RawColorRuntime


def _default_runtime(sources: int) -> Any:
    runtime = require("pykinect2.PyKinectRuntime", "kinect2")
    return with_raw_color(runtime.PyKinectRuntime)(sources)


class Kinect2Device(ThreadedDevice):
    """A Kinect v2 through the Windows SDK. *runtime_factory(sources)* makes the runtime
    (default: pykinect2's ``PyKinectRuntime``); *streams* limits what is opened."""

    kind = "kinect2"

    def __init__(
        self,
        device_id: str = "kinect2",
        *,
        name: str = "Kinect v2",
        streams: list[StreamKind | str] | None = None,
        runtime_factory: Callable[[int], Any] = _default_runtime,
        poll_interval: float = 0.002,
    ) -> None:
        super().__init__()
        self.id, self.name = device_id, name
        self.kinds = tuple(StreamKind(s) for s in (streams or list(StreamKind)))
        self._factory = runtime_factory
        self._poll = poll_interval
        self._rt: Any = None
        self._seq = 0
        self._depth_intr: Intrinsics | None = None
        self._calibration: Calibration | None = None
        self._table: np.ndarray | None = None
        self._calibrate_after = 0.0
        self.fit: ColorFit | None = None
        """The color camera's fit to the SDK's mapper, once made (its error is in it)."""

    @property
    def streams(self) -> dict[StreamKind, StreamInfo]:
        raw = self._rt is None or hasattr(self._rt, "get_last_raw_color_frame")
        return kinect_v2_streams(
            self.kinds, self._depth_intr, native_color="yuy2" if raw else "bgra8"
        )

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "body_tracking": StreamKind.body in self.kinds,
            "sdk": "Kinect for Windows SDK 2.0",
        }

    def calibration(self) -> Calibration | None:
        """Derived from the SDK's coordinate mapper once the sensor runs (None until then)."""
        return self._calibration

    def calibration_table(self, name: str) -> Any:
        return self._table if name == TABLE_DEPTH_TO_CAMERA else None

    def _calibrate(self) -> None:
        """Ask the mapper for a portable calibration; retried every 5 s until it answers."""
        mapper = getattr(self._rt, "_mapper", None)
        if mapper is None or self._depth_intr is None or time.monotonic() < self._calibrate_after:
            return
        try:
            cal, table, fit = calibrate(self.id, mapper, self._depth_intr)
        except (DeviceError, UsageError) as exc:
            self._calibrate_after = time.monotonic() + 5.0
            log.warning("%s: no calibration yet (%s); trying again in 5 s", self.id, exc)
            return
        self._calibration, self._table, self.fit = cal, table, fit
        log.info(
            "%s: color camera fitted to the SDK's mapper: %.3f px rms, %.3f px at worst",
            self.id,
            fit.rms_px,
            fit.check_max_px,
        )
        self.on_calibration.send(self)

    def _open(self) -> None:
        sources = 0
        for kind, bit in (
            (StreamKind.color, SOURCE_COLOR),
            (StreamKind.depth, SOURCE_DEPTH),
            (StreamKind.infrared, SOURCE_INFRARED),
            (StreamKind.body, SOURCE_BODY),
        ):
            if kind in self.kinds:
                sources |= bit
        try:
            self._rt = self._factory(sources)
        except ImportError:
            raise
        except Exception as exc:
            raise DeviceError(f"Kinect v2 runtime did not start: {exc}") from exc
        self._depth_intr = self._intrinsics()
        self._seq = 0

    def _intrinsics(self) -> Intrinsics | None:
        mapper = getattr(self._rt, "_mapper", None)
        if mapper is None:
            return None
        try:
            ci = mapper.GetDepthCameraIntrinsics()
        except Exception:
            return None
        if not ci.FocalLengthX:  # the SDK reports zeros until the sensor has warmed up
            return None
        return Intrinsics(
            width=DEPTH_SIZE[0],
            height=DEPTH_SIZE[1],
            fx=ci.FocalLengthX,
            fy=ci.FocalLengthY,
            cx=ci.PrincipalPointX,
            cy=ci.PrincipalPointY,
            # the SDK's radial terms are Brown-Conrady's k1 k2 k3 (no tangential terms)
            distortion=(
                ci.RadialDistortionSecondOrder,
                ci.RadialDistortionFourthOrder,
                0.0,
                0.0,
                ci.RadialDistortionSixthOrder,
            ),
            model="plumb_bob",
        )

    def _close(self) -> None:
        if self._rt is not None:
            try:
                self._rt.close()
            finally:
                self._rt = None

    def _capture(self, stop: threading.Event) -> list[Frame]:
        rt = self._rt
        if self._depth_intr is None:
            self._depth_intr = self._intrinsics()
        if self._calibration is None:
            self._calibrate()
        got: list[tuple[StreamKind, Any]] = []
        while not got:
            if stop.is_set():
                return []
            if StreamKind.color in self.kinds:
                color = self._color(rt)
                if color is not None:
                    got.append((StreamKind.color, color))
            if StreamKind.depth in self.kinds and rt.has_new_depth_frame():
                flat = rt.get_last_depth_frame()
                got.append(
                    (StreamKind.depth, _shaped(flat, (DEPTH_SIZE[1], DEPTH_SIZE[0]), np.uint16))
                )
            if StreamKind.infrared in self.kinds and rt.has_new_infrared_frame():
                flat = rt.get_last_infrared_frame()
                got.append(
                    (StreamKind.infrared, _shaped(flat, (DEPTH_SIZE[1], DEPTH_SIZE[0]), np.uint16))
                )
            if StreamKind.body in self.kinds and rt.has_new_body_frame():
                got.append((StreamKind.body, self._bodies(rt.get_last_body_frame())))
            if not got:
                stop.wait(self._poll)
        now = time.time_ns()
        seq = self._seq
        self._seq += 1
        intr = {StreamKind.depth: self._depth_intr, StreamKind.infrared: self._depth_intr}
        return make_frameset(self.id, seq, dict(got), intr, device_time_ns=now, host_time_ns=now)

    def _color(self, rt: Any) -> Any:
        """The newest color frame: YUY2 as it came (a source encoding), or the SDK's BGRA."""
        if hasattr(rt, "get_last_raw_color_frame"):
            if not rt.has_new_raw_color_frame():
                return None
            return yuy2_source(rt.get_last_raw_color_frame(), *COLOR_SIZE)
        if not rt.has_new_color_frame():
            return None
        return _shaped(rt.get_last_color_frame(), (COLOR_SIZE[1], COLOR_SIZE[0], 4), np.uint8)

    def _bodies(self, frame_data: Any) -> tuple[Body, ...]:
        rt = self._rt
        bodies = []
        for body in frame_data.bodies:
            if not body.is_tracked:
                continue
            joints = body.joints
            color = rt.body_joints_to_color_space(joints)
            depth = rt.body_joints_to_depth_space(joints)
            bodies.append(
                Body(
                    tracking_id=int(body.tracking_id),
                    left_hand=HandState(int(body.hand_left_state)),
                    right_hand=HandState(int(body.hand_right_state)),
                    joints=tuple(
                        Joint(
                            type=jt,
                            position=(
                                float(joints[jt].Position.x),
                                float(joints[jt].Position.y),
                                float(joints[jt].Position.z),
                            ),
                            state=TrackingState(int(joints[jt].TrackingState)),
                            color_xy=(float(color[jt].x), float(color[jt].y)),
                            depth_xy=(float(depth[jt].x), float(depth[jt].y)),
                        )
                        for jt in JointType
                    ),
                )
            )
        return tuple(bodies)


def _shaped(flat: Any, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    arr = np.asarray(flat)
    if arr.dtype != dtype or arr.size != int(np.prod(shape)):
        raise DeviceError(
            f"Kinect v2 frame of {arr.size} {arr.dtype}, expected {shape} {np.dtype(dtype)}"
        )
    return arr.reshape(shape).copy()  # the SDK reuses its buffer
