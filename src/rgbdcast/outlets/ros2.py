"""Appearing as ROS 2 topics over Zenoh, in rmw_zenoh's format, with no ROS installed.

How this works: :class:`Ros2Publishing` is one ROS node (a liveliness token of kind ``NN``) on a
Zenoh session. Each device stream becomes ROS publishers (an ``MP`` token each, a random GID, a
sequence counter): color on ``/<device>/color/image_raw/compressed``
(``sensor_msgs/msg/CompressedImage``, the stream's own JPEG), depth and infrared on
``/<device>/<stream>/image_raw`` (``sensor_msgs/msg/Image``, ``16UC1`` / ``mono16``), each image
stream's ``camera_info`` beside it (sent with every frame, so a late joiner has it with the next
image), and bodies on ``/<device>/bodies`` (``std_msgs/msg/String``, JSON as the plain-TCP
gateway's ``KinectSkeleton``); a video stream (``h264``, ``hevc``) also gets its units on
``image_raw/foxglove`` and ``image_raw/ffmpeg`` (:mod:`.ros2video`); a device with depth and
color also gets ``/tf_static``, ``depth_registered`` and ``points`` (:mod:`.ros2geo`). A
:class:`Ros2Sender` is a publisher tap: the producer leaves the newest frame in a slot and the
sender's thread converts it (CDR) and puts it, so conversion and a stuck link never slow the
server.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

import numpy as np

from ..codecs.body import bodies_to_json
from ..codecs.jpeg import JpegCodec
from ..codecs.video import is_video
from ..devices.base import require
from ..errors import UsageError
from ..frames import Frame, Intrinsics, StreamKind
from ..geometry.calibration import Calibration, Extrinsics
from ..net.slot import LatestSlot
from ..protocol import ros2
from ..protocol.envelope import parse_encoded
from ..protocol.ros2 import ros_name
from ..protocol.viewer import is_plain_jpeg
from .base import DevicePort, OutletHost, stream_intrinsics, tap_device
from .ros2geo import Ros2Geometry
from .ros2video import Ros2VideoSender
from .zenoh import ZenohLink, ZenohOptions, ZenohSession, session_of

__all__ = ["QOS", "Ros2Outlet", "Ros2Publishing", "Ros2Sender", "Ros2VideoSender", "ros_name"]

log = logging.getLogger(__name__)

QOS = ros2.qos_key(best_effort=True, depth=5)
"""The sensor-data profile: best effort, volatile, keep last 5."""

_jpeg = JpegCodec()


class _RosPublisher:
    """One ROS publisher: a Zenoh publisher on the topic's key and its ``MP`` token."""

    def __init__(
        self, node: Ros2Publishing, topic: str, rtype: ros2.RosType, qos: str = QOS
    ) -> None:
        zenoh = require("zenoh", "zenoh")
        self.topic = topic
        self.key = ros2.topic_key(node.domain, topic, rtype)
        self.gid = os.urandom(16)
        self.seq = 0
        session = node.link.session
        self._pub = session.declare_publisher(
            self.key, congestion_control=zenoh.CongestionControl.DROP, express=True
        )
        token_key = ros2.liveliness_key(
            node.domain,
            node.session_id,
            0,
            node.next_entity_id(),
            "MP",
            node.namespace,
            node.node,
            topic=topic,
            rtype=rtype,
            qos=qos,
        )
        self._token = session.liveliness().declare_token(token_key)
        self.token_key = token_key

    def matched(self) -> bool:
        try:
            return bool(self._pub.matching_status.matching)
        except Exception:
            return False

    def put(self, data: bytes, stamp_ns: int) -> None:
        self.seq += 1
        self._pub.put(data, attachment=ros2.attachment(self.seq, stamp_ns, self.gid))

    def close(self) -> None:
        for thing in (self._pub, self._token):
            try:
                thing.undeclare()
            except Exception as exc:  # the session may be closed already
                log.debug("undeclaring %s: %s", self.topic, exc)


class Ros2Sender:
    """Converts and publishes one device stream on its ROS topics, newest frame first."""

    def __init__(
        self,
        node: Ros2Publishing,
        device: str,
        kind: StreamKind,
        calibration: Callable[[], Calibration | None] = lambda: None,
    ) -> None:
        base = f"/{ros_name(device)}"
        self.kind = kind
        camera = "color" if kind is StreamKind.color else "depth"  # infrared is the depth camera
        self.frame_id = ros_name(device) + f"_{camera}_optical_frame"
        self._calibration = calibration
        self.pubs: dict[str, _RosPublisher] = {}
        if kind is StreamKind.color:
            self.pubs["image"] = _RosPublisher(
                node, f"{base}/color/image_raw/compressed", ros2.COMPRESSED_IMAGE
            )
        elif kind is StreamKind.body:
            self.pubs["image"] = _RosPublisher(node, f"{base}/bodies", ros2.STRING)
        else:
            self.pubs["image"] = _RosPublisher(node, f"{base}/{kind.value}/image_raw", ros2.IMAGE)
        self.compressed_depth = node.compressed_depth
        if kind is StreamKind.depth:
            self.pubs["compressed"] = _RosPublisher(
                node, f"{base}/depth/image_raw/compressedDepth", ros2.COMPRESSED_IMAGE
            )
        if kind is not StreamKind.body:
            self.pubs["info"] = _RosPublisher(
                node, f"{base}/{kind.value}/camera_info", ros2.CAMERA_INFO
            )
        self.slot: LatestSlot[tuple[Frame | bytes, Any]] = LatestSlot()
        self.sent = self.errors = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"rgbdcast-ros2-{device}-{kind.value}", daemon=True
        )
        self._thread.start()

    def matched(self) -> bool:
        return any(p.matched() for p in self.pubs.values())

    def submit(self, frame: Frame | None, header: bytes, payload: Any) -> None:
        """A publisher tap: keep the newest frame (and the stream's encoding of it). Without
        *frame* (the bridge forwards frames as received) it is decoded on the sender's thread
        from *header* and *payload*."""
        self.slot.put((frame if frame is not None else header, payload))

    def _run(self) -> None:
        while not self._stop.is_set():
            item = self.slot.take(timeout=0.1)
            if item is None:
                continue
            try:
                self._publish(*item)
                self.sent += 1
            except Exception as exc:  # a closing session, a frame we cannot convert
                self.errors += 1
                log.debug("ROS 2 publish of %s failed: %s", self.kind.value, exc)

    def _publish(self, frame_or_header: Frame | bytes, payload: Any) -> None:
        if isinstance(frame_or_header, Frame):
            frame = frame_or_header
        else:  # from the bridge: decode only what ROS cannot take as it is
            enc = parse_encoded([frame_or_header, payload])
            head = enc.header
            if head.stream is StreamKind.color and is_plain_jpeg(enc.payload):
                intr = Intrinsics.from_dict(head.intrinsics) if head.intrinsics else None
                self._jpeg(head.host_time_ns, enc.payload, intr, head.shape[1], head.shape[0])
                return
            frame = enc.decode()
        stamp = frame.host_time_ns
        if frame.kind is StreamKind.body:
            text = json.dumps(bodies_to_json(frame.bodies), separators=(",", ":"))
            self.pubs["image"].put(ros2.string(text), stamp)
            return
        h, w = frame.shape[:2]
        if frame.kind is StreamKind.color:
            plain = is_plain_jpeg(payload)
            jpeg = payload if plain else _jpeg.encode(frame.array, {"quality": 85})
            self._jpeg(stamp, jpeg, frame.intrinsics, w, h)
            return
        depth = np.ascontiguousarray(frame.array, dtype="<u2")
        if self.pubs["image"].matched():
            enc_name = "16UC1" if frame.kind is StreamKind.depth else "mono16"
            msg = ros2.image(stamp, self.frame_id, h, w, enc_name, w * 2, depth.data)
            self.pubs["image"].put(msg, stamp)
        packed = self.pubs.get("compressed")
        if packed is not None and packed.matched():
            fmt, data = ros2.compressed_depth(depth, self.compressed_depth)
            packed.put(ros2.compressed_image(stamp, self.frame_id, fmt, data), stamp)
        self._info(stamp, frame.intrinsics, w, h)

    def _jpeg(self, stamp: int, jpeg: Any, intr: Intrinsics | None, w: int, h: int) -> None:
        self.pubs["image"].put(ros2.compressed_image(stamp, self.frame_id, "jpeg", jpeg), stamp)
        self._info(stamp, intr, w, h)

    def _info(self, stamp: int, intr: Intrinsics | None, w: int, h: int) -> None:
        info = self.pubs["info"]
        if info.matched():
            intr = stream_intrinsics(self._calibration, self.kind, intr, w, h)
            intr = intr or Intrinsics(width=w, height=h, fx=1.0, fy=1.0, cx=0.0, cy=0.0)
            info.put(ros2.camera_info(stamp, self.frame_id, intr), stamp)

    def counts(self) -> dict[str, int]:
        return {"sent": self.sent, "errors": self.errors}

    def close(self) -> None:
        self._stop.set()
        self.slot.close()
        self._thread.join(2.0)
        for pub in self.pubs.values():
            pub.close()


Sender = Ros2Sender | Ros2VideoSender


class Ros2Publishing:
    """One ROS 2 node named *node* in *namespace* on domain *domain*, on *link*'s session."""

    def __init__(
        self,
        link: ZenohLink,
        domain: int,
        node: str,
        namespace: str = "",
        compressed_depth: str = "png",
    ) -> None:
        if not 0 <= domain <= 232:
            raise ValueError(f"ROS domain ids are 0..232, got {domain}")
        if compressed_depth not in ("png", "rvl"):
            raise ValueError("compressedDepth is png or rvl")
        self.compressed_depth = compressed_depth
        self.link = link
        self.domain = domain
        self.node = ros_name(node)
        self.namespace = namespace
        self.session_id = str(link.session.zid())
        self._ids = 0
        self._lock = threading.Lock()
        self._token = link.session.liveliness().declare_token(
            ros2.liveliness_key(domain, self.session_id, 0, 0, "NN", namespace, self.node)
        )
        self._devices: dict[str, dict[StreamKind, Sender]] = {}
        self._geometry: dict[str, Ros2Geometry] = {}

    def next_entity_id(self) -> int:
        with self._lock:
            self._ids += 1
            return self._ids

    def add_device(
        self,
        device: str,
        kinds: list[StreamKind],
        calibration: Callable[[], Calibration | None] = lambda: None,
        table: Callable[[str], Any] = lambda name: None,
        placed: tuple[str, Extrinsics] | None = None,
        codecs: Mapping[StreamKind, str] | None = None,
        keyframe: Callable[[StreamKind], object] = lambda kind: None,
    ) -> dict[StreamKind, Sender]:
        """Publishers for *device*'s streams and, with depth and color, its geometry
        (``/tf_static``, ``depth_registered``, ``points``) from *calibration*. A stream whose
        codec (*codecs*) is video also gets its units; *keyframe(kind)* asks it for one."""
        self.remove_device(device)
        senders: dict[StreamKind, Sender] = {}
        for k in kinds:
            codec = (codecs or {}).get(k, "")
            plain = Ros2Sender(self, device, k, calibration)
            if is_video(codec):
                make = partial(_RosPublisher, self)
                ask = partial(keyframe, k)
                senders[k] = Ros2VideoSender(plain, make, device, k, codec, ask)
            else:
                senders[k] = plain
        geometry = None
        if (StreamKind.depth in kinds and StreamKind.color in kinds) or placed is not None:
            geometry = Ros2Geometry(self, device, calibration, table, _RosPublisher, placed)
        with self._lock:
            self._devices[device] = senders
            if geometry is not None:
                self._geometry[device] = geometry
        return senders

    def geometry(self, device: str) -> Ros2Geometry | None:
        with self._lock:
            return self._geometry.get(device)

    def stats(self) -> dict[str, dict[str, int]]:
        """Per ``<device>/<stream>``: messages sent, and those that failed to convert or put
        (a video stream adds its units sent, skipped and decoded, and keyframes asked for);
        per ``<device>/geometry``: framesets converted, failed, and not matched in time."""
        with self._lock:
            devices = {d: dict(s) for d, s in self._devices.items()}
            geometry = dict(self._geometry)
        out = {
            f"{d}/{k.value}": s.counts()
            for d, senders in devices.items()
            for k, s in senders.items()
        }
        for d, g in geometry.items():
            out[f"{d}/geometry"] = {"sent": g.sent, "errors": g.errors, "unmatched": g.unmatched}
        return out

    def sender(self, device: str, kind: StreamKind) -> Sender | None:
        with self._lock:
            return self._devices.get(device, {}).get(kind)

    def remove_device(self, device: str) -> None:
        with self._lock:
            senders = self._devices.pop(device, {})
            geometry = self._geometry.pop(device, None)
        for sender in senders.values():
            sender.close()
        if geometry is not None:
            geometry.close()

    def close(self) -> None:
        with self._lock:
            devices = list(self._devices)
        for device in devices:
            self.remove_device(device)
        try:
            self._token.undeclare()
        except Exception as exc:
            log.debug("undeclaring the node token: %s", exc)


class Ros2Outlet:
    """``serve --ros2``: the server's streams as ROS 2 topics (rmw_zenoh's format, no ROS needed
    on this machine), published as node ``<server name>`` on ROS domain *domain*. *zenoh* is
    where to join (options, or a session shared with
    :class:`~rgbdcast.outlets.zenoh.ZenohOutlet`); *compressed_depth* (``png`` or ``rvl``) is
    the method of the ``compressedDepth`` topic. Topics are converted only while subscribed."""

    name = "ros2"

    def __init__(
        self,
        zenoh: ZenohSession | ZenohOptions,
        domain: int = 0,
        *,
        compressed_depth: str = "png",
    ) -> None:
        if not 0 <= domain <= 232:
            raise UsageError(f"ROS domain ids are 0..232, got {domain}")
        if compressed_depth not in ("png", "rvl"):
            raise UsageError(f"compressedDepth is png or rvl, not {compressed_depth!r}")
        self.session = session_of(zenoh)
        self.domain = domain
        self.compressed_depth = compressed_depth
        self.node: Ros2Publishing | None = None
        """The ROS 2 node (None while the server is stopped)."""
        self._host: OutletHost | None = None

    def attach(self, host: OutletHost) -> None:
        self.session.check(host)
        self._host = host

    def start(self) -> None:
        assert self._host is not None
        link = self.session.acquire()
        try:
            self.node = Ros2Publishing(
                link, self.domain, self._host.name, compressed_depth=self.compressed_depth
            )
        except BaseException:
            self.session.release()
            raise

    def stop(self) -> None:
        node, self.node = self.node, None
        if node is not None:
            node.close()
            self.session.release()

    def device_added(self, device: DevicePort) -> None:
        if self.node is None:
            return
        senders = self.node.add_device(
            device.id,
            list(device.streams),
            device.calibration,
            device.calibration_table,
            codecs=device.codecs,
            keyframe=device.request_keyframe,
        )
        geometry = self.node.geometry(device.id)
        tap_device(
            device,
            {kind: (sender.submit, sender.matched) for kind, sender in senders.items()},
            (geometry.submit, geometry.wanted) if geometry is not None else None,
        )

    def device_removed(self, device_id: str) -> None:
        if self.node is not None:
            self.node.remove_device(device_id)

    def endpoints(self) -> dict[str, str]:
        return {}

    def stats(self) -> dict[str, Any] | None:
        node = self.node
        return node.stats() if node is not None else None
