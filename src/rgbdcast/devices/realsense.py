"""Intel RealSense through librealsense (``[realsense]`` extra, pyrealsense2 from PyPI).

How this works: a ``pyrealsense2`` pipeline delivers framesets; depth (z16) is converted to
millimetres with the device's depth scale (nothing to do when the scale is 1 mm), color is
served as BGR, infrared as uint16. Intrinsics come from the SDK's stream profiles, and the
calibration adds the depth-to-color extrinsics (``get_extrinsics_to``). The same
class plays a recording (``playback=FILE``, made by the SDK's recorder) as the device: that is
how it is tested here without hardware. On Linux the SDK needs libusb-1.0 (Debian:
``apt-get install libusb-1.0-0``).
"""

from __future__ import annotations

import contextlib
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DeviceError, UsageError
from ..frames import Frame, Intrinsics, StreamKind
from ..geometry.calibration import Calibration, Extrinsics
from .base import StreamInfo, ThreadedDevice, require

__all__ = ["RealSenseDevice"]


def _rs() -> Any:
    return require("pyrealsense2", "realsense")


def _intrinsics(profile: Any) -> Intrinsics:
    """The SDK's intrinsics; Brown-Conrady (and any model whose coefficients are all zero)
    travels as OpenCV's plumb_bob, other models under their SDK name."""
    i = profile.as_video_stream_profile().get_intrinsics()
    model = str(i.model).split(".")[-1]
    coeffs = tuple(float(c) for c in i.coeffs)
    if not any(coeffs):
        model, coeffs = "plumb_bob", ()
    elif model == "brown_conrady":
        model = "plumb_bob"
    return Intrinsics(
        width=i.width,
        height=i.height,
        fx=i.fx,
        fy=i.fy,
        cx=i.ppx,
        cy=i.ppy,
        distortion=coeffs,
        model=model,
    )


def _calibration(device_id: str, profile: Any, rs: Any) -> Calibration | None:
    """Depth and color intrinsics and the SDK's ``get_extrinsics_to`` (its rotation is
    column-major), from a started pipeline's profile; None without both streams."""
    try:
        depth = profile.get_stream(rs.stream.depth)
        color = profile.get_stream(rs.stream.color)
    except RuntimeError:
        return None
    ext = depth.get_extrinsics_to(color)
    rot = np.asarray(ext.rotation, np.float64).reshape(3, 3).T  # column-major in the SDK
    return Calibration(
        device_id=device_id,
        depth=_intrinsics(depth),
        color=_intrinsics(color),
        depth_to_color=Extrinsics.from_matrix(rot, ext.translation),
        depth_units=0.001,  # served in millimetres whatever the sensor's depth scale
        source="realsense sdk: stream intrinsics and get_extrinsics_to",
    )


class RealSenseDevice(ThreadedDevice):
    """A RealSense camera (by *serial*, or the first one), or a recording (*playback*)."""

    kind = "realsense"

    def __init__(
        self,
        serial: str | None = None,
        *,
        playback: str | Path | None = None,
        loop: bool = True,
        real_time: bool = True,
        device_id: str | None = None,
        depth_size: tuple[int, int] = (848, 480),
        color_size: tuple[int, int] = (1280, 720),
        fps: int = 30,
    ) -> None:
        super().__init__()
        self.rs = _rs()
        if playback is not None and not Path(playback).exists():
            raise DeviceError(f"{playback}: no such recording")
        self.serial, self.playback, self.loop, self.real_time = serial, playback, loop, real_time
        self.depth_size, self.color_size, self.fps = depth_size, color_size, fps
        self.name = "Intel RealSense"
        self._pipe: Any = None
        self._calibration: Calibration | None = None
        self.calibration_error: str | None = None
        self._scale = 0.001
        self._seq = 0
        self.finished = False
        self._streams = self._probe()
        self.id = device_id or f"realsense-{self.serial or 'unknown'}"

    def _probe(self) -> dict[StreamKind, StreamInfo]:
        """What the device (or recording) offers, known before it starts."""
        rs = self.rs
        if self.playback is None:
            return {
                StreamKind.depth: StreamInfo(
                    kind=StreamKind.depth,
                    width=self.depth_size[0],
                    height=self.depth_size[1],
                    fps=self.fps,
                    dtype="<u2",
                    units="mm",
                ),
                StreamKind.color: StreamInfo(
                    kind=StreamKind.color,
                    width=self.color_size[0],
                    height=self.color_size[1],
                    fps=self.fps,
                    dtype="|u1",
                    units="bgr8",
                ),
                StreamKind.infrared: StreamInfo(
                    kind=StreamKind.infrared,
                    width=self.depth_size[0],
                    height=self.depth_size[1],
                    fps=self.fps,
                    dtype="<u2",
                    units="intensity",
                ),
            }
        ctx = rs.context()
        dev = ctx.load_device(str(self.playback))
        try:
            self.serial = self.serial or dev.get_info(rs.camera_info.serial_number)
            self.name = (
                dev.get_info(rs.camera_info.name)
                if dev.supports(rs.camera_info.name)
                else "RealSense recording"
            )
            found: dict[StreamKind, StreamInfo] = {}
            kinds = {
                rs.stream.depth: StreamKind.depth,
                rs.stream.color: StreamKind.color,
                rs.stream.infrared: StreamKind.infrared,
            }
            for sensor in dev.query_sensors():
                for prof in sensor.get_stream_profiles():
                    kind = kinds.get(prof.stream_type())
                    if kind is None or kind in found:
                        continue
                    intr = _intrinsics(prof)
                    found[kind] = StreamInfo(
                        kind=kind,
                        width=intr.width,
                        height=intr.height,
                        fps=float(prof.fps()),
                        dtype="|u1" if kind is StreamKind.color else "<u2",
                        units={"depth": "mm", "color": "bgr8", "infrared": "intensity"}[kind.value],
                        intrinsics=intr,
                    )
            if not found:
                raise DeviceError(f"{self.playback}: no depth, color or infrared stream")
            return found
        finally:
            ctx.unload_device(str(self.playback))

    @property
    def streams(self) -> dict[StreamKind, StreamInfo]:
        return self._streams

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "serial": self.serial,
            "body_tracking": False,
            "playback": str(self.playback) if self.playback else None,
        }

    def _open(self) -> None:
        rs = self.rs
        cfg = rs.config()
        if self.playback is not None:
            cfg.enable_device_from_file(str(self.playback), repeat_playback=self.loop)
        else:
            if self.serial:
                cfg.enable_device(self.serial)
            for kind, info in self._streams.items():
                stream = {
                    StreamKind.depth: rs.stream.depth,
                    StreamKind.color: rs.stream.color,
                    StreamKind.infrared: rs.stream.infrared,
                }[kind]
                fmt = {
                    StreamKind.depth: rs.format.z16,
                    StreamKind.color: rs.format.bgr8,
                    StreamKind.infrared: rs.format.y8,
                }[kind]
                cfg.enable_stream(stream, info.width, info.height, fmt, int(info.fps))
        pipe = rs.pipeline()
        try:
            profile = pipe.start(cfg)
        except RuntimeError as exc:
            raise DeviceError(f"RealSense {self.serial or ''} did not start: {exc}") from exc
        dev = profile.get_device()
        if self.playback is not None:
            dev.as_playback().set_real_time(self.real_time)
        try:
            self._scale = float(dev.first_depth_sensor().get_depth_scale())
        except RuntimeError:
            self._scale = 0.001
        self._pipe, self._seq, self.finished = pipe, 0, False
        try:
            self._calibration = _calibration(self.id, profile, rs)
        except (UsageError, RuntimeError) as exc:  # served without one; who/me says why
            self._calibration, self.calibration_error = None, str(exc)

    def calibration(self) -> Calibration | None:
        """The SDK's intrinsics and depth-to-color extrinsics, once started."""
        if self.calibration_error is not None:
            raise UsageError(self.calibration_error)
        return self._calibration

    def _close(self) -> None:
        if self._pipe is not None:
            with contextlib.suppress(RuntimeError):
                self._pipe.stop()
            self._pipe = None

    def _capture(self, stop: threading.Event) -> list[Frame]:
        if self.finished:
            stop.wait()
            return []
        ok, fs = self._pipe.try_wait_for_frames(500)
        if not ok:
            if self.playback is not None and not self.loop:
                self.finished = True  # the recording ended: not a failure
                return []
            if stop.is_set():
                return []
            raise DeviceError(f"RealSense {self.serial} stopped delivering frames")
        now = time.time_ns()
        seq, self._seq = self._seq, self._seq + 1
        out = []
        for frame in fs:
            kind = {
                self.rs.stream.depth: StreamKind.depth,
                self.rs.stream.color: StreamKind.color,
                self.rs.stream.infrared: StreamKind.infrared,
            }.get(frame.profile.stream_type())
            if kind is None or kind not in self._streams:
                continue
            data = np.asanyarray(frame.get_data()).copy()
            if kind is StreamKind.depth and abs(self._scale - 0.001) > 1e-9:
                data = np.clip(np.rint(data * (self._scale * 1000.0)), 0, 65535).astype(np.uint16)
            elif kind is StreamKind.infrared and data.dtype != np.uint16:
                data = data.astype(np.uint16)
            elif kind is StreamKind.color and str(frame.profile.format()).endswith("rgb8"):
                data = np.ascontiguousarray(data[..., ::-1])
            out.append(
                Frame(
                    device_id=self.id,
                    kind=kind,
                    seq=seq,
                    data=data,
                    device_time_ns=int(frame.get_timestamp() * 1e6),
                    host_time_ns=now,
                    frameset_id=seq,
                    intrinsics=self._streams[kind].intrinsics,
                )
            )
        return out
