"""What a ROS 2 user of an RGB-D camera expects besides its images: the geometry.

How this works: per device with depth and color, a :class:`Ros2Geometry` publishes

- ``/tf_static`` (``tf2_msgs/msg/TFMessage``): the color camera's pose in the depth camera,
  between ``<device>_depth_optical_frame`` and ``<device>_color_optical_frame`` (the frame ids of
  the images and ``camera_info``\\ s), every 2 s and whenever the calibration changes; with a
  rig file (``bridge --rig``), also the depth camera's pose in the rig frame;
- ``/<device>/depth_registered/image_raw`` (``16UC1``, depth as the color camera sees it,
  z-buffered) with its ``camera_info`` (the color camera's): what ``depth_image_proc`` wants;
- ``/<device>/points`` (``sensor_msgs/msg/PointCloud2``, organised 512x424, ``x y z rgb``,
  occlusion-tested colors, NaN where there is no depth): what RViz shows.

The depth and color taps leave their newest frame; a thread of its own pairs the two of one
frameset and converts them only while someone subscribes to a product.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from ..frames import Frame, StreamKind
from ..geometry.calibration import TABLE_DEPTH_TO_CAMERA, Calibration, Extrinsics
from ..geometry.pointcloud import depth_to_color, point_cloud
from ..geometry.register import register
from ..protocol import ros2
from ..protocol.envelope import parse_encoded, parse_header
from ..protocol.ros2 import ros_name

__all__ = ["TF_PERIOD_S", "Ros2Geometry"]

log = logging.getLogger(__name__)

TF_PERIOD_S = 2.0
TF_QOS = ros2.qos_key(transient_local=True, depth=1)


class Ros2Geometry:
    """``/tf_static``, ``depth_registered`` and ``points`` of one device on *node*."""

    def __init__(
        self,
        node: Any,
        device: str,
        calibration: Callable[[], Calibration | None],
        table: Callable[[str], Any],
        publisher: Callable[..., Any],
        placed: tuple[str, Extrinsics] | None = None,
    ) -> None:
        base = f"/{ros_name(device)}"
        self.depth_frame = f"{ros_name(device)}_depth_optical_frame"
        self.color_frame = f"{ros_name(device)}_color_optical_frame"
        self._calibration, self._table = calibration, table
        self._placed = placed
        """The rig frame's name and the depth camera's pose in it (``bridge --rig``)."""
        self.tf = publisher(node, "/tf_static", ros2.TF_MESSAGE, qos=TF_QOS)
        self.registered = publisher(node, f"{base}/depth_registered/image_raw", ros2.IMAGE)
        self.registered_info = publisher(
            node, f"{base}/depth_registered/camera_info", ros2.CAMERA_INFO
        )
        self.points = publisher(node, f"{base}/points", ros2.POINT_CLOUD2)
        self.sent = self.errors = self.unmatched = 0
        self._latest: dict[StreamKind, tuple[int, Frame | bytes, Any]] = {}
        self._lock = threading.Lock()
        self._new = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"rgbdcast-ros2geo-{device}", daemon=True
        )
        self._thread.start()

    def wanted(self) -> bool:
        """Depth and color are needed while a product has a subscriber."""
        return self.registered.matched() or self.points.matched() or self.registered_info.matched()

    def submit(self, frame: Frame | None, header: bytes, payload: Any) -> None:
        """A depth or color tap (on the publisher's thread): keep the newest, never wait."""
        if frame is not None:
            kind, fs = frame.kind, frame.frameset_id
        else:
            head = parse_header(header)
            kind, fs = head.stream, head.frameset_id
        with self._lock:
            self._latest[kind] = (fs, frame if frame is not None else header, payload)
        self._new.set()

    def _run(self) -> None:
        done = -1
        next_tf = 0.0
        revision = None
        while not self._stop.is_set():
            self._new.wait(0.1)
            self._new.clear()
            try:
                cal = self._calibration()
            except Exception as exc:  # a bridge's client may be reconnecting
                log.debug("calibration unavailable: %s", exc)
                cal = None
            usable = cal if cal is not None and cal.registrable else None
            now = time.monotonic()
            if (usable or self._placed) and (
                now >= next_tf or (usable is not None and usable.revision != revision)
            ):
                self._publish_tf(usable)
                next_tf, revision = now + TF_PERIOD_S, usable.revision if usable else None
            if usable is None:
                continue
            cal = usable
            with self._lock:
                depth, color = (
                    self._latest.get(StreamKind.depth),
                    self._latest.get(StreamKind.color),
                )
            if depth is None or color is None or not self.wanted():
                continue
            if depth[0] != color[0]:
                if depth[0] != done:
                    self.unmatched += 1  # the partner of the newer one has not come yet
                continue
            if depth[0] == done:
                continue
            done = depth[0]
            try:
                self._publish(cal, _frame(depth[1], depth[2]), _frame(color[1], color[2]))
                self.sent += 1
            except Exception as exc:
                self.errors += 1
                log.debug("ROS 2 geometry failed: %s", exc)

    def _publish_tf(self, cal: Calibration | None) -> None:
        transforms: list[ros2.Transform] = []
        if cal is not None and cal.depth_to_color is not None:
            pose = cal.depth_to_color.inverse()  # the color camera in the depth camera
            transforms.append(
                (self.depth_frame, self.color_frame, pose.translation, pose.quaternion())
            )
        if self._placed is not None:  # the depth camera in the rig
            frame, place = self._placed
            transforms.append((frame, self.depth_frame, place.translation, place.quaternion()))
        if transforms:
            self.tf.put(ros2.tf_message(time.time_ns(), transforms), time.time_ns())

    def _publish(self, cal: Calibration, depth: Frame, color: Frame) -> None:
        rays = self._table(TABLE_DEPTH_TO_CAMERA) if TABLE_DEPTH_TO_CAMERA in cal.tables else None
        img = color.array  # BGR, or BGRA as a Kinect v2 delivers it: both are taken
        stamp = depth.host_time_ns
        if self.points.matched():
            cloud = point_cloud(
                depth.array, img, cal, rays=rays, organized=True, keep_uncolored=True
            )
            self.points.put(
                ros2.point_cloud2(stamp, self.depth_frame, cloud.points, cloud.colors), stamp
            )
        if self.registered.matched() or self.registered_info.matched():
            assert cal.color is not None
            dc = depth_to_color(register(depth.array, cal, rays), cal)
            h, w = dc.shape
            self.registered.put(
                ros2.image(stamp, self.color_frame, h, w, "16UC1", w * 2, dc.data), stamp
            )
            self.registered_info.put(ros2.camera_info(stamp, self.color_frame, cal.color), stamp)

    def close(self) -> None:
        self._stop.set()
        self._new.set()
        self._thread.join(2.0)
        for pub in (self.tf, self.registered, self.registered_info, self.points):
            pub.close()


def _frame(item: Frame | bytes, payload: Any) -> Frame:
    if isinstance(item, Frame):
        return item
    return parse_encoded([item, payload]).decode()
