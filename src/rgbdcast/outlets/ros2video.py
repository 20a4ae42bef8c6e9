"""A video stream (``h264``, ``hevc``) as ROS 2 topics: its units as sent, and pictures.

How this works: beside the stream's usual topics (``image_raw/compressed`` JPEG for color,
``image_raw`` for infrared, ``camera_info``: a :class:`~.ros2.Ros2Sender`, newest frame first), a
video stream gets the units themselves on ``<stream>/image_raw/foxglove``
(``foxglove_msgs/msg/CompressedVideo``, what foxglove_compressed_video_transport publishes) and
``<stream>/image_raw/ffmpeg`` (``ffmpeg_image_transport_msgs/msg/FFMPEGPacket``), each built only
while subscribed. A subscriber decodes those itself, so they go out every one, in order, each run
from a keyframe (:class:`~.videorun.UnitRun`; the first subscriber's arrival asks for a
keyframe). On a server the pictures for the usual topics are its own frames; in a bridge, which
has only the units, this sender's thread decodes them in order while those topics are watched.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from ..codecs.video import VideoDecoder
from ..frames import Frame, StreamKind
from ..protocol import ros2
from ..protocol.envelope import FrameHeader, frame_from_header, parse_header
from ..protocol.ros2 import ros_name
from .videorun import FORMATS, UnitRun

__all__ = ["Ros2VideoSender", "ffmpeg_encoding"]

log = logging.getLogger(__name__)


def ffmpeg_encoding(codec: str, kind: StreamKind) -> str:
    """``FFMPEGPacket.encoding``: codec, the pixels the encoder took, and the ROS image they came
    from (``h264;yuv420p;bgr8;bgr8``; infrared is encoded as 8-bit gray)."""
    image = "bgr8" if kind is StreamKind.color else "mono8"
    return f"{codec};yuv420p;{image};{image}"


class Ros2VideoSender:
    """One video stream's ROS topics: the units on ``foxglove`` and ``ffmpeg``, pictures on the
    usual ones. Has a :class:`~.ros2.Ros2Sender`'s interface (``submit``, ``matched``,
    ``sent``, ``errors``, ``close``)."""

    def __init__(
        self,
        plain: Any,
        publisher: Callable[[str, ros2.RosType], Any],
        device: str,
        kind: StreamKind,
        codec: str,
        keyframe: Callable[[], object] = lambda: None,
    ) -> None:
        """*plain* is the stream's :class:`~.ros2.Ros2Sender` (its usual topics); *publisher*
        makes a ROS publisher of a topic and type on the node."""
        self.kind = kind
        self.codec = codec
        self.plain = plain
        self.frame_id = str(plain.frame_id)
        base = f"/{ros_name(device)}/{kind.value}/image_raw"
        self.units = {
            "foxglove": publisher(f"{base}/foxglove", ros2.COMPRESSED_VIDEO),
            "ffmpeg": publisher(f"{base}/ffmpeg", ros2.FFMPEG_PACKET),
        }
        self.encoding = ffmpeg_encoding(codec, kind)
        self.run = UnitRun(codec, keyframe)
        self._decoder: VideoDecoder | None = None
        self.decoded = 0
        """Units decoded here (a bridge's pictures for the usual topics)."""
        self._sent = self._errors = 0
        self._decoding = False
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._loop, name=f"rgbdcast-ros2-{device}-{kind.value}-video", daemon=True
        )
        self._thread.start()

    @property
    def sent(self) -> int:
        return self.plain.sent + self._sent

    @property
    def errors(self) -> int:
        return self.plain.errors + self._errors

    def _units_matched(self) -> bool:
        return any(p.matched() for p in self.units.values())

    def matched(self) -> bool:
        return self._units_matched() or self.plain.matched()

    def submit(self, frame: Frame | None, header: bytes, payload: Any) -> None:
        """A publisher tap. With *frame* (a server) the usual topics get it as it is; without
        (a bridge) they get this thread's decoding of the units."""
        units = self._units_matched()
        plain = self.plain.matched()
        if frame is not None and plain:
            self.plain.submit(frame, header, payload)
        decode = frame is None and plain
        if not (units or decode):
            self.run.idle()
            self._decoding = False
            return
        if decode and not self._decoding:  # the decoder needs a keyframe to start too
            self.run.restart()
        self._decoding = decode
        if self.run.offer(parse_header(header), payload, True, decode):
            self._wake.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            if not self._wake.wait(0.1):
                continue
            self._wake.clear()
            picture: Frame | None = None
            for head, unit, decode in self.run.take():
                try:
                    self._send(head, unit)
                    if decode:
                        picture = self._decode(head, unit) or picture
                except Exception as exc:  # a closing session, a unit that does not decode
                    self._errors += 1
                    log.debug("ROS 2 video of %s failed: %s", self.kind.value, exc)
            if picture is not None:  # the newest picture of the batch, as on the other topics
                self.plain.submit(picture, b"", b"")

    def _send(self, head: FrameHeader, unit: bytes) -> None:
        stamp = head.host_time_ns
        fox, ff = self.units["foxglove"], self.units["ffmpeg"]
        if fox.matched():
            fox.put(ros2.compressed_video(stamp, self.frame_id, unit, FORMATS[self.codec]), stamp)
            self._sent += 1
        if ff.matched():
            h, w = head.shape[:2]
            msg = ros2.ffmpeg_packet(
                stamp, self.frame_id, w, h, self.encoding, head.au or 0, head.key, unit
            )
            ff.put(msg, stamp)
            self._sent += 1

    def _decode(self, head: FrameHeader, unit: bytes) -> Frame | None:
        """In a bridge, while the usual topics are watched: the unit's picture, decoded in
        order (None until a run from a keyframe gives one)."""
        if self._decoder is None:
            self._decoder = VideoDecoder(self.codec)
        image = self._decoder.feed(unit, head.au, head.key, head.shape, head.dtype)
        if image is None:
            return None
        self.decoded += 1
        return frame_from_header(head, image)

    def counts(self) -> dict[str, int]:
        return {
            "sent": self.sent,
            "errors": self.errors,
            "units_sent": self._sent,
            "decoded": self.decoded,
            **self.run.counts(),
        }

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(2.0)
        for pub in self.units.values():
            pub.close()
        self.plain.close()
        if self._decoder is not None:
            self._decoder.close()
