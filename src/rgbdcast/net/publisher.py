"""One data endpoint: a device stream encoded once and published to every subscriber.

How this works: the device thread drops each frame into a :class:`LatestSlot` (never blocking;
a frame the encoder has not taken yet is replaced and counted as ``dropped_busy``). The
publisher thread owns the XPUB socket: it takes the newest frame, encodes it once, and sends
``[header, payload]`` (a big payload is lent to ZeroMQ, not copied: ``COPY_BELOW``). The XPUB
socket tells it whether anyone is subscribed; when nobody is, frames are not encoded at all
(``skipped_idle``). Each subscriber has a small send high-water mark, so a slow one loses
frames inside ZeroMQ and never holds anyone back.
``waited_for_source`` counts the frames the publisher was idle for: close to ``frames_in -
dropped_busy`` when the source, not the encoder or the network, sets the pace.
A frame its source delivered already in the stream's codec (``Frame.encoded``: a webcam's MJPEG,
a recording's JPEG) is sent as it came (``passed_through``), neither decoded nor re-encoded,
unless the codec parameters say ``passthrough=False``.

A video codec (``h264``, ``hevc``) is stateful: the publisher keeps the stream's encoder and
numbers its access units (``au`` in the header). A keyframe is forced when a subscriber joins
(the XPUB socket is verbose, so it hears every join) or asks for one (``request_keyframe``,
from the control endpoint), at most one per :data:`KEYFRAME_MIN_INTERVAL_S`: a request that
comes sooner waits for that moment and is merged with the others waiting (counted).
"""

from __future__ import annotations

import logging
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import zmq

from .. import codecs
from .._osthreads import name_native_thread
from ..codecs.video import is_keyframe
from ..codecs.yuv import is_yuy2
from ..frames import Encoded, Frame, StreamKind
from ..protocol.envelope import build_header
from .counters import Counters
from .security import ServerKeys, secure_server
from .slot import LatestSlot
from .sockets import bind_tcp

__all__ = ["PublisherStats", "StreamPublisher", "stream_rates"]

log = logging.getLogger(__name__)

Tap = Callable[[Frame, bytes, Any], None]

SEND_HWM = 2
"""Frames ZeroMQ may queue per subscriber before it drops for that subscriber."""
COPY_BELOW = 1 << 20
"""Payloads smaller than this are copied into ZeroMQ rather than lent to it: a lent buffer is
released by pyzmq's free-callback thread, which must wake and take the GIL for every frame (the
server's device and publisher threads then wait for it); copying 434 kB of raw depth takes
~20 us. Bigger payloads (raw 1080p color, 6 MB) are still sent without copying."""


KEYFRAME_MIN_INTERVAL_S = 0.5
"""The least time between two forced keyframes of one video stream: each one costs every
subscriber a keyframe's bytes (25 to 50 P-frames' worth), so a flood of requests cannot make
the stream all keyframes."""


@dataclass
class PublisherStats(Counters):
    frames_in: int = 0
    sent: int = 0
    dropped_busy: int = 0
    waited_for_source: int = 0
    skipped_idle: int = 0
    encode_errors: int = 0
    tap_errors: int = 0
    passed_through: int = 0
    passthrough_refused: int = 0
    from_source_layout: int = 0
    """Frames encoded straight from their source's own layout (YUY2), with no BGR between."""
    bytes_sent: int = 0
    encode_ns: int = 0
    subscribed: bool = False
    keyframes: int = 0
    keyframes_forced: int = 0
    keyframe_requests: int = 0
    keyframe_requests_merged: int = 0
    video_encoder: str = ""


def stream_rates(before: dict[str, Any], after: dict[str, Any], seconds: float) -> dict[str, float]:
    """What two readings of one stream's counters (``stats_reply``), *seconds* apart, say:
    frames/s the source offered (``offered_fps``), handed to ZeroMQ (``sent_fps``) and
    replaced while the encoder was busy (``busy_fps``), the mean encode time (``encode_ms``),
    and the share of the publisher's takes that found no frame waiting (``waited_share``: near
    1 the source sets the pace, near 0 the publisher does). NaN where nothing was sent or taken;
    a counter an older server lacks counts as 0."""
    keys = ("frames_in", "dropped_busy", "sent", "encode_ns", "waited_for_source")
    d = {k: after.get(k, 0) - before.get(k, 0) for k in keys}
    taken = d["frames_in"] - d["dropped_busy"]
    nan = float("nan")
    return {
        "offered_fps": d["frames_in"] / seconds,
        "sent_fps": d["sent"] / seconds,
        "busy_fps": d["dropped_busy"] / seconds,
        "encode_ms": d["encode_ns"] / d["sent"] / 1e6 if d["sent"] > 0 else nan,
        "waited_share": d["waited_for_source"] / taken if taken > 0 else nan,
    }


class StreamPublisher:
    """Publishes one stream of one device on its own XPUB socket (bound on creation)."""

    def __init__(
        self,
        ctx: zmq.Context[Any],
        device_id: str,
        kind: StreamKind,
        bind_host: str,
        codec: str | None = None,
        codec_params: dict[str, Any] | None = None,
        port: int = 0,
        secure: ServerKeys | None = None,
        checksums: bool = False,
        clock: Callable[[], int] | None = None,
    ) -> None:
        self.checksums = checksums
        self._clock = clock
        """A server clock other than the host's (a diagnostic skew): header times are given in
        it. None: the host's clock, as devices stamp frames."""
        self.calibration: str | None = None
        """The revision of the device's calibration, sent in every header (set by the server;
        one assignment, read once per frame)."""
        self.device_id = device_id
        self.kind = kind
        self.codec_name = codec or codecs.default_codec(kind)
        self._codec = codecs.get(self.codec_name, kind)
        self._params = dict(codec_params or {})
        self._passthrough = bool(self._params.pop("passthrough", True))
        make_encoder = getattr(self._codec, "stream_encoder", None)
        self._video = make_encoder(self._params) if make_encoder is not None else None
        self._au = 0
        self._source_au: int | None = None
        self._key_pending = False
        self._key_lock = threading.Lock()
        self._last_forced = -KEYFRAME_MIN_INTERVAL_S
        self.slot: LatestSlot[Frame] = LatestSlot()
        self._stats = PublisherStats()
        self._topics: set[bytes] = set()
        self._stop = threading.Event()
        self._taps: tuple[tuple[Tap, Callable[[], bool]], ...] = ()
        self._failed_taps: set[int] = set()
        sock = ctx.socket(zmq.XPUB)
        secure_server(sock, secure)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.SNDHWM, SEND_HWM)
        sock.copy_threshold = COPY_BELOW
        sock.setsockopt(zmq.RCVHWM, 64)
        sock.setsockopt(zmq.MAXMSGSIZE, 4096)  # subscriptions only
        if self._video is not None:
            sock.setsockopt(zmq.XPUB_VERBOSE, 1)  # every join, not just the first per topic
        self.port = bind_tcp(sock, bind_host, port)
        # The socket is handed to the publisher thread here; from start() on only it touches it.
        self._sock: zmq.Socket[Any] = sock
        self._thread = threading.Thread(
            target=self._run, name=f"rgbdcast-pub-{device_id}-{kind.value}", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 1.0) -> None:
        self._stop.set()
        self.slot.close()
        if self._thread.is_alive():
            self._thread.join(timeout)
        elif not self._thread.ident:  # never started: close here, nobody else owns it
            self._sock.close(0)

    def add_tap(self, tap: Tap, wanted: Callable[[], bool]) -> None:
        """Also hand every encoded frame to *tap* as ``tap(frame, header, payload)`` (on the
        publisher thread; it must not block), and encode even with no ZeroMQ subscriber while
        *wanted()* says someone consumes the tap (the web viewer, Zenoh)."""
        self._taps = (*self._taps, (tap, wanted))

    def tap_failed(self, tap: object) -> None:
        """Count a tap of this stream that raised (call it from the ``except`` block): the
        frame still goes on to the other taps and the subscribers. Logged once per tap."""
        self._stats.tap_errors += 1
        if id(tap) not in self._failed_taps:
            self._failed_taps.add(id(tap))
            log.exception(
                "a tap of %s/%s failed (counted as tap_errors; logged once)",
                self.device_id,
                self.kind.value,
            )

    @property
    def is_video(self) -> bool:
        return self._video is not None

    def request_keyframe(self) -> bool:
        """Ask for a keyframe soon (any thread; a video stream's subscriber lost its chain).
        False if the stream is not video. Requests are merged while one waits."""
        if self._video is None:
            return False
        with self._key_lock:
            self._stats.keyframe_requests += 1
            if self._key_pending:
                self._stats.keyframe_requests_merged += 1
            self._key_pending = True
        return True

    @property
    def tapped(self) -> bool:
        return bool(self._taps)

    def submit(self, frame: Frame) -> None:
        """Called on the device thread: hand over the newest frame, never block."""
        self.slot.put(frame)

    @property
    def stats(self) -> PublisherStats:
        s = self._stats
        s.frames_in = self.slot.put_count
        s.dropped_busy = self.slot.dropped
        s.waited_for_source = self.slot.waited
        s.subscribed = bool(self._topics)
        return s

    def _drain_subscriptions(self) -> None:
        while int(self._sock.getsockopt(zmq.EVENTS)) & zmq.POLLIN:  # no exception per frame
            try:
                msg = self._sock.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            if not msg:
                continue
            if msg[0] == 1:
                self._topics.add(msg[1:])
                if self._video is not None:  # a late joiner needs a keyframe to start from
                    self.request_keyframe()
            elif msg[0] == 0:
                self._topics.discard(msg[1:])

    def _run(self) -> None:
        name_native_thread(f"pub-{self.kind.value[:5]}-{self.device_id}")  # top -H, py-spy
        sock = self._sock
        try:
            while not self._stop.is_set():
                frame = self.slot.take(timeout=0.05)
                self._drain_subscriptions()
                if frame is None:
                    continue
                if not self._topics and not self._tap_wanted():
                    self._stats.skipped_idle += 1
                    continue
                self._publish(sock, frame)
        finally:
            sock.close(0)
            if self._video is not None:
                self._video.close()

    def _tap_wanted(self) -> bool:
        for tap, wanted in self._taps:
            try:
                if wanted():
                    return True
            except Exception:
                self.tap_failed(tap)
        return False

    def _passes(self, source: Encoded | None) -> bool:
        """Whether a source's own encoding can be sent as it is (counts a refusal)."""
        if not self._passthrough or source is None:
            return False
        if codecs.accepts(self._codec, source):
            return True
        if source.codec == self.codec_name:
            self._stats.passthrough_refused += 1
        return False

    def _passes_video(self, source: Encoded | None) -> bool:
        return (
            self._passthrough
            and source is not None
            and source.codec == self.codec_name
            and source.au is not None
        )

    def _pass_video(self, source: Encoded) -> tuple[int, bool]:
        """A source's own video unit (a recording's), sent as it is. A unit the source skipped
        or the slot dropped shows as a gap in ``au``, so subscribers wait for a keyframe; the
        source's keyframes are the only ones (a request cannot force one: counted only)."""
        if self._source_au is not None and source.au != self._source_au + 1:
            self._au += 1
        self._source_au = source.au
        key = is_keyframe(self.codec_name, source.payload)
        self._stats.passed_through += 1
        if key:
            self._stats.keyframes += 1
            self._key_pending = False
        au = self._au
        self._au += 1
        return au, key

    def _encode_video(self, frame: Frame) -> tuple[Any, tuple[int, bool]]:
        """One access unit, a keyframe if one is due and allowed; its number and key flag."""
        assert self._video is not None
        now = time.monotonic()
        with self._key_lock:
            asked = self._stats.keyframe_requests
            force = self._key_pending and now - self._last_forced >= KEYFRAME_MIN_INTERVAL_S
        source = frame.encoded
        if is_yuy2(source):  # the source's own layout: no BGR in between
            assert source is not None
            h, w = source.shape[:2]
            image = np.frombuffer(source.payload, np.uint8).reshape(h, w, 2)
            self._stats.from_source_layout += 1
        else:
            image = frame.array
        payload, key = self._video.encode(image, keyframe=force)
        if force:
            self._last_forced = now
            self._stats.keyframes_forced += 1
        if key:
            with self._key_lock:  # it serves every request made before it was encoded
                if self._stats.keyframe_requests == asked:
                    self._key_pending = False
            self._stats.keyframes += 1
            self._stats.video_encoder = self._video.encoder_name or ""
        au = self._au
        self._au += 1
        return payload, (au, key)

    def _publish(self, sock: zmq.Socket[Any], frame: Frame) -> None:
        t0 = time.perf_counter_ns()
        source = frame.encoded
        payload: Any
        video: tuple[int, bool] | None = None
        if self._video is not None and self._passes_video(source):
            assert source is not None
            payload, shape, video = source.payload, source.shape, self._pass_video(source)
        elif self._video is not None:
            try:
                payload, video = self._encode_video(frame)
            except Exception as exc:
                self._stats.encode_errors += 1
                log.error("encoding %s/%s failed: %s", self.device_id, self.kind.value, exc)
                return
            shape = codecs.output_shape(self._codec, frame.shape)
        elif self._passes(source):
            assert source is not None
            payload, shape = source.payload, source.shape
            self._stats.passed_through += 1
        else:
            try:
                payload = codecs.encode_source(self._codec, source, self._params)
                if payload is None:
                    payload = self._codec.encode(frame.data, self._params)
                else:
                    self._stats.from_source_layout += 1
            except Exception as exc:
                self._stats.encode_errors += 1
                log.error("encoding %s/%s failed: %s", self.device_id, self.kind.value, exc)
                return
            shape = codecs.output_shape(self._codec, frame.shape)
        self._stats.encode_ns += time.perf_counter_ns() - t0
        size = memoryview(payload).nbytes
        crc = zlib.crc32(payload) if self.checksums else None
        now = time.time_ns()
        if self._clock is not None:  # frames were stamped with the host's clock: shift them
            skew = self._clock() - now
            frame = frame.replace(host_time_ns=frame.host_time_ns + skew)
            now += skew
        header = build_header(
            frame, self.codec_name, size, now, shape, crc, self.calibration, video
        )
        for tap, _ in self._taps:
            try:
                tap(frame, header, payload)
            except Exception:  # an outlet's bug must not stop the stream for everyone else
                self.tap_failed(tap)
        try:
            sock.send_multipart([header, payload], copy=False)
        except zmq.ZMQError as exc:  # only on shutdown; XPUB drops rather than blocks
            log.debug("send on %s/%s failed: %s", self.device_id, self.kind.value, exc)
            return
        self._stats.sent += 1
        self._stats.bytes_sent += size + len(header)
