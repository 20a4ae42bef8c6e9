"""One device's Foxglove topics: its images, calibrations, bodies, point cloud and transforms.

How this works: each stream gets a :class:`StreamTopics` converter and a device with depth and
color a :class:`DeviceGeometry`. Both are publisher taps: the producer (the server's publisher
thread, or the bridge's client thread) leaves the newest frame in a latest-frame slot and never
waits; the converter's own thread turns it into Foxglove messages (:mod:`rgbdcast.protocol.
foxglove`) and logs them on the SDK's channels, which queue them for each subscribed client
(bounded by the server's backlog; the oldest go first). A topic is converted only while a
client subscribes to it (``channel.has_sinks()``), and a stream nobody wants, here or on
ZeroMQ, is not encoded at all.

Topics, per device ``<d>``: ``/<d>/color`` (``CompressedImage``: the stream's own JPEG, byte
for byte), ``/<d>/depth`` (``RawImage 16UC1``), ``/<d>/infrared`` (``RawImage mono16``),
``/<d>/<stream>/calibration`` (``CameraCalibration``, with every frame), ``/<d>/bodies``
(``SceneUpdate``), ``/<d>/points`` (``PointCloud``, colored, every *decimate*-th pixel), and on
the server's ``/tf`` the color camera's pose in the depth camera (and the depth camera's in the
rig frame when a rig file places it) every second and as soon as a client subscribes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from .._osthreads import name_native_thread
from ..codecs.jpeg import JpegCodec
from ..frames import Frame, Intrinsics, StreamKind
from ..geometry.calibration import (
    TABLE_DEPTH_TO_CAMERA,
    VIEW_IN_DEPTH,
    Calibration,
    Extrinsics,
    optical_frame,
    view_frame,
)
from ..geometry.pointcloud import point_cloud
from ..net.slot import LatestSlot
from ..protocol import foxglove as fx
from ..protocol.envelope import parse_encoded, parse_header
from ..protocol.viewer import is_plain_jpeg
from .base import stream_intrinsics
from .webcloud import FramesetPairs

__all__ = ["TF_PERIOD_S", "DeviceGeometry", "SlotWorker", "StreamTopics", "optical_frame"]

log = logging.getLogger(__name__)

TF_PERIOD_S = 1.0
_jpeg = JpegCodec()


def _decoded(item: Frame | bytes, payload: Any) -> Frame:
    return item if isinstance(item, Frame) else parse_encoded([item, payload]).decode()


class SlotWorker:
    """A thread that handles the newest item of a latest-frame slot, counting what it sent and
    what failed (a conversion error is counted and logged at debug level; the thread goes on).
    *os_name* (15 bytes) is what ``top -H`` and ``rgbdcast bench`` show for it."""

    def __init__(self, name: str, handle: Callable[[Any], None], os_name: str = "") -> None:
        self.slot: LatestSlot[Any] = LatestSlot()
        self.sent = self.errors = 0
        self._handle = handle
        self._os_name = os_name
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        if self._os_name:
            name_native_thread(self._os_name)
        while not self._stop.is_set():
            item = self.slot.take(timeout=0.1)
            if item is None:
                self.idle()
                continue
            try:
                self._handle(item)
                self.sent += 1
            except Exception as exc:  # a frame we cannot convert; a closing channel
                self.errors += 1
                log.debug("%s failed: %s", self._thread.name, exc)

    def idle(self) -> None:
        """Called when no item came for 0.1 s."""

    def counts(self) -> dict[str, int]:
        return {"sent": self.sent, "errors": self.errors, "dropped": self.slot.dropped}

    def close(self) -> None:
        self._stop.set()
        self.slot.close()
        if self._thread is not threading.current_thread():
            self._thread.join(2.0)


def log_calibration(
    channel: Any,
    calibration: Callable[[], Calibration | None],
    kind: StreamKind,
    frame_id: str,
    t: int,
    intr: Intrinsics | None,
    w: int,
    h: int,
) -> None:
    """Log a stream's ``CameraCalibration`` on *channel*, if a client watches it and the
    stream has a camera (the device calibration's, else the frame's intrinsics)."""
    if not channel.has_sinks():
        return
    camera = stream_intrinsics(calibration, kind, intr, w, h)
    if camera is not None:
        channel.log(fx.camera_calibration(t, frame_id, camera), log_time=t)


class StreamTopics(SlotWorker):
    """A stream's topic and (for images) its calibration topic."""

    def __init__(
        self,
        context: Any,
        device: str,
        kind: StreamKind,
        calibration: Callable[[], Calibration | None],
    ) -> None:
        from foxglove import channels

        base = f"/{device}/{kind.value}"
        self.kind = kind
        self.frame_id = optical_frame(device, kind)
        self._calibration = calibration
        self.info: Any = None
        if kind is StreamKind.body:
            self.main: Any = channels.SceneUpdateChannel(f"/{device}/bodies", context=context)
        elif kind is StreamKind.color:
            self.main = channels.CompressedImageChannel(base, context=context)
        else:
            self.main = channels.RawImageChannel(base, context=context)
        if kind is not StreamKind.body:
            self.info = channels.CameraCalibrationChannel(f"{base}/calibration", context=context)
        self.topics = [c.topic() for c in (self.main, self.info) if c is not None]
        super().__init__(
            f"rgbdcast-foxglove-{device}-{kind.value}", self._publish, f"fox-{kind.value}"
        )

    def wanted(self) -> bool:
        return bool(self.main.has_sinks() or (self.info is not None and self.info.has_sinks()))

    def submit(self, frame: Frame | None, header: bytes, payload: Any) -> None:
        """A publisher tap: keep the newest frame (decoded later, on this thread, if it came
        without its :class:`Frame`: the bridge forwards frames as received). The stream is
        encoded anyway while ZeroMQ clients subscribe: a topic nobody watches takes nothing."""
        if self.wanted():
            self.slot.put((frame if frame is not None else header, payload))

    def _publish(self, item: tuple[Frame | bytes, Any]) -> None:
        head_or_frame, payload = item
        if self.kind is StreamKind.color and is_plain_jpeg(payload):  # as sent, never re-encoded
            if isinstance(head_or_frame, Frame):
                t, intr = head_or_frame.host_time_ns, head_or_frame.intrinsics
                w, h = head_or_frame.shape[1], head_or_frame.shape[0]
            else:
                head = parse_header(head_or_frame)
                t, w, h = head.host_time_ns, head.shape[1], head.shape[0]
                intr = Intrinsics.from_dict(head.intrinsics) if head.intrinsics else None
            if self.main.has_sinks():
                self.main.log(fx.compressed_image(t, self.frame_id, payload), log_time=t)
            self._info(t, intr, w, h)
            return
        frame = _decoded(head_or_frame, payload)
        t = frame.host_time_ns
        if self.kind is StreamKind.body:
            if self.main.has_sinks():
                update = fx.bodies_update(t, self.frame_id, frame.bodies)
                self.main.log(update, log_time=t)
            return
        h, w = frame.shape[:2]
        if self.main.has_sinks():
            if self.kind is StreamKind.color:  # a color codec that is not JPEG: make one
                jpeg = _jpeg.encode(frame.array, {"quality": 85})
                self.main.log(fx.compressed_image(t, self.frame_id, jpeg), log_time=t)
            else:
                enc = "16UC1" if self.kind is StreamKind.depth else "mono16"
                self.main.log(fx.raw_image(t, self.frame_id, frame.array, enc), log_time=t)
        self._info(t, frame.intrinsics, w, h)

    def _info(self, t: int, intr: Intrinsics | None, w: int, h: int) -> None:
        if self.info is not None:
            log_calibration(self.info, self._calibration, self.kind, self.frame_id, t, intr, w, h)

    def close(self) -> None:
        super().close()
        for ch in (self.main, self.info):
            if ch is not None:
                ch.close()


class DeviceGeometry(SlotWorker):
    """A device's ``/<d>/points`` and its transforms on the server's ``/tf``."""

    def __init__(
        self,
        context: Any,
        device: str,
        tf: Any,
        calibration: Callable[[], Calibration | None],
        table: Callable[[str], Any],
        *,
        decimate: int = 2,
        placed: tuple[str, Extrinsics] | None = None,
        fresh: Callable[[], bool] = lambda: False,
    ) -> None:
        from foxglove import channels

        self.device = device
        self.points = channels.PointCloudChannel(f"/{device}/points", context=context)
        self.topics = [self.points.topic()]
        self.tf = tf
        self.decimate = decimate
        self.placed = placed
        self._calibration, self._table = calibration, table
        self._fresh = fresh
        self._pairs = FramesetPairs()
        self._next_tf = 0.0
        self._revision: str | None = None
        super().__init__(f"rgbdcast-foxglove-{device}-geometry", self._publish, "fox-points")

    def wanted(self) -> bool:
        return bool(self.points.has_sinks())

    def submit(self, frame: Frame | None, header: bytes, payload: Any) -> None:
        """A depth or color tap: once both of one frameset are in, hand them to the thread
        (only while a client watches the cloud; the transforms go out on their own)."""
        if not self.wanted():
            return
        item: tuple[Frame | bytes, Any]
        if frame is not None:
            kind, fs, item = frame.kind, frame.frameset_id, (frame, payload)
        else:
            head = parse_header(header)
            kind, fs, item = head.stream, head.frameset_id, (header, payload)
        pair = self._pairs.offer(kind, fs, item)
        if pair is not None:
            self.slot.put(pair)

    def calibration(self) -> Calibration | None:
        try:
            cal = self._calibration()
        except Exception as exc:  # a bridge's client may be reconnecting
            log.debug("calibration unavailable: %s", exc)
            return None
        return cal if cal is not None and cal.registrable else None

    def idle(self) -> None:
        self.transforms(self.calibration())

    def transforms(self, cal: Calibration | None) -> None:
        """Publish the transforms if a second has passed, the calibration changed or a client
        just subscribed to ``/tf``."""
        now = time.monotonic()
        revision = cal.revision if cal is not None else None
        if now < self._next_tf and revision == self._revision and not self._fresh():
            return
        self._next_tf, self._revision = now + TF_PERIOD_S, revision
        out: list[fx.Transform] = []
        depth_frame = optical_frame(self.device, StreamKind.depth)
        if cal is not None and cal.depth_to_color is not None:
            pose = cal.depth_to_color.inverse()  # the color camera in the depth camera
            color_frame = optical_frame(self.device, StreamKind.color)
            out.append((depth_frame, color_frame, pose.translation, pose.quaternion()))
        if self.placed is not None:
            frame, place = self.placed
            out.append((frame, depth_frame, place.translation, place.quaternion()))
        out.append((depth_frame, view_frame(self.device), (0.0, 0.0, 0.0), VIEW_IN_DEPTH))
        if self.tf.has_sinks():
            t = time.time_ns()
            self.tf.log(fx.frame_transforms(t, out), log_time=t)

    def _publish(self, pair: tuple[tuple[Any, Any], tuple[Any, Any]]) -> None:
        cal = self.calibration()
        self.transforms(cal)
        if cal is None or not self.points.has_sinks():
            return
        depth, color = _decoded(*pair[0]), _decoded(*pair[1])
        rays = self._table(TABLE_DEPTH_TO_CAMERA) if TABLE_DEPTH_TO_CAMERA in cal.tables else None
        cloud = point_cloud(depth.array, color.array, cal, rays=rays, decimate=self.decimate)
        t = depth.host_time_ns
        frame_id = optical_frame(self.device, StreamKind.depth)
        msg = fx.point_cloud(t, frame_id, cloud.points, cloud.colors)
        self.points.log(msg, log_time=t)

    def close(self) -> None:
        super().close()
        self.points.close()
