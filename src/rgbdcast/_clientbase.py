"""What ``Client`` and ``AsyncClient`` share: signals, the server view, frame handling.

The twins differ only in how they wait (a thread with a poller, or asyncio); everything that
decides something lives here and in :mod:`rgbdcast.protocol.session`.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from typing import Any, Generic, Literal, TypeVar, cast

from blinker import Signal

from ._clientvideo import VideoState, decode_video
from .codecs.video import VideoDecoder, is_video
from .devices.mock import DepthFrame
from .errors import ProtocolError, UsageError
from .frames import Frame, StreamKind
from .net.addresses import make_endpoint, parse_endpoint, resolvable
from .protocol.clock import ClockEstimate, ClockSync
from .protocol.control import EndpointType, MessageType, parse_reply
from .protocol.envelope import EncodedFrame, parse_encoded
from .protocol.session import DeviceRecord, ServerView, StatsSnapshot, StreamStats

__all__ = [
    "BlockingSubscription",
    "ClientBase",
    "Subscription",
    "SubscriptionBase",
    "until_closed",
    "until_closed_async",
]

POLL_S = 0.5
"""How often an iterator over a subscription looks whether it was closed meanwhile."""


def until_closed(get: Callable[..., Any], closed: Callable[[], bool]) -> Iterator[Any]:
    """``get(timeout=...)`` again and again until *closed()*; what every blocking iterator over
    frames (subscriptions, framesets, rigs) does."""
    while not closed():
        try:
            yield get(timeout=POLL_S)
        except TimeoutError:
            continue
        except UsageError:  # closed while waiting
            return


async def until_closed_async(
    get: Callable[..., Awaitable[Any]], closed: Callable[[], bool]
) -> AsyncIterator[Any]:
    """The asyncio twin of :func:`until_closed`."""
    while not closed():
        try:
            yield await get(timeout=POLL_S)
        except TimeoutError:
            continue
        except UsageError:
            return


T = TypeVar("T", Frame, EncodedFrame)
Decode = bool | Literal["lazy"]
"""A subscription's decoding: True (when taken), False (never: ``EncodedFrame``), or
``"lazy"`` (a :class:`Frame` whose image decodes when its pixels are first read)."""

log = logging.getLogger("rgbdcast.client")


class SubscriptionBase:
    """One device stream a client receives: a small newest-wins queue plus statistics."""

    def __init__(
        self, device_id: str, kind: StreamKind, queue_size: int, strict: bool, decode: Decode = True
    ) -> None:
        if queue_size < 1:
            raise UsageError("queue_size must be at least 1")
        self.device_id = device_id
        self.kind = kind
        self.strict = strict
        self.decode = decode
        self.endpoint: str | None = None
        self.stats = StreamStats()
        self.queue_dropped = 0
        self.bad_frames = 0
        self.last_error: ProtocolError | None = None
        self._queue: deque[Frame | EncodedFrame | ProtocolError] = deque(maxlen=queue_size)
        self._latest: Frame | EncodedFrame | None = None
        self._latest_decoded: tuple[EncodedFrame, Frame] | None = None
        self.closed = False
        self._video = VideoState()

    @property
    def video(self) -> VideoDecoder | None:
        """A video stream's decoder (made at its first unit when frames are decoded): its
        ``gaps``, ``skipped`` (units not shown while the chain was broken) and ``decoded``."""
        return self._video.decoder

    @property
    def keyframe_requests(self) -> int:
        """Keyframes this subscription asked the server for (after a gap or a late join)."""
        return self._video.requests

    def _push(self, item: Frame | EncodedFrame | ProtocolError) -> None:
        if len(self._queue) == self._queue.maxlen:
            self.queue_dropped += 1
        self._queue.append(item)
        if not isinstance(item, ProtocolError):
            self._latest = item

    def _bad(self, exc: ProtocolError) -> None:
        """Count a malformed frame; a strict subscription hands it to its reader."""
        self.bad_frames += 1
        self.last_error = exc
        if self.bad_frames in (1, 10, 100) or self.bad_frames % 1000 == 0:
            log.warning("bad frame on %r (%d so far): %s", self, self.bad_frames, exc)
        if self.strict:
            self._push(exc)

    def _resolve(self, item: Frame | EncodedFrame | ProtocolError) -> Frame | EncodedFrame | None:
        """What the reader gets for a queued item: decoded if asked, None for a bad frame."""
        if isinstance(item, ProtocolError):
            raise item
        if self.decode and isinstance(item, EncodedFrame):
            try:
                return item.lazy() if self.decode == "lazy" else item.decode()
            except ProtocolError as exc:
                self._bad(exc)
                if self.strict:
                    raise
                return None
        return item

    def _resolve_latest(self) -> Frame | EncodedFrame | None:
        latest = self._latest
        if latest is None or not (self.decode and isinstance(latest, EncodedFrame)):
            return latest
        if self._latest_decoded is not None and self._latest_decoded[0] is latest:
            return self._latest_decoded[1]
        try:
            frame = latest.lazy() if self.decode == "lazy" else latest.decode()
        except ProtocolError as exc:
            self._bad(exc)
            return None
        self._latest_decoded = (latest, frame)
        return frame

    def snapshot(self) -> StatsSnapshot:
        """fps, drops (sequence gaps), latency p50/p99 and bandwidth, right now."""
        return self.stats.snapshot(time.time_ns(), self.queue_dropped)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.device_id}/{self.kind.value}>"


class BlockingSubscription(SubscriptionBase):
    """A subscription whose reader waits on a condition (threads, not asyncio): what the ZeroMQ
    ``Subscription`` and the Zenoh subscription share."""

    def __init__(
        self, device_id: str, kind: StreamKind, queue_size: int, strict: bool, decode: Decode = True
    ) -> None:
        super().__init__(device_id, kind, queue_size, strict, decode)
        self._cond = threading.Condition()

    def _what(self) -> str:
        return f"{self.kind.value} frame"

    def _push(self, item: Frame | EncodedFrame | ProtocolError) -> None:
        with self._cond:
            super()._push(item)
            self._cond.notify_all()

    def get(self, timeout: float | None = None) -> Any:
        """The next frame (oldest in the small queue); ``TimeoutError`` after *timeout* s.

        With ``strict=True`` a malformed frame from the network raises :class:`ProtocolError`.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            with self._cond:
                if not self._cond.wait_for(lambda: self._queue or self.closed, left):
                    raise TimeoutError(f"no {self._what()} within {timeout} s")
                if not self._queue:
                    raise UsageError("subscription is closed")
                item = self._queue.popleft()
            resolved = self._resolve(item)  # decodes here, on the caller's thread
            if resolved is not None:
                return resolved

    def __iter__(self) -> Iterator[Any]:
        return until_closed(self.get, lambda: self.closed)

    def _mark_closed(self) -> None:
        with self._cond:
            self.closed = True
            self._cond.notify_all()


class Subscription(BlockingSubscription, Generic[T]):
    """Frames of one device stream. Iterate over it, or ask for :meth:`latest` / :meth:`get`.

    >>> # for frame in client.subscribe("mock0", "depth"): print(frame.array.mean())
    """

    def __init__(
        self,
        client: Any,
        device_id: str,
        kind: StreamKind,
        queue_size: int,
        strict: bool,
        decode: Decode = True,
    ) -> None:
        super().__init__(device_id, kind, queue_size, strict, decode)
        self._client = client

    def get(self, timeout: float | None = None) -> T:
        """The next frame (oldest in the small queue); ``TimeoutError`` after *timeout* s.

        With ``strict=True`` a malformed frame from the network raises :class:`ProtocolError`.
        """
        return cast(T, super().get(timeout))

    def latest(self, timeout: float | None = None) -> T | None:
        """The newest frame received so far (waiting up to *timeout* s for a first one)."""
        with self._cond:
            self._cond.wait_for(lambda: self._latest is not None or self.closed, timeout)
        return cast("T | None", self._resolve_latest())

    def __iter__(self) -> Iterator[T]:
        return cast(Iterator[T], super().__iter__())

    def close(self) -> None:
        """Stop receiving this stream."""
        self._client.unsubscribe(self)


class ClientBase:
    on_connect = Signal()
    """Emitted when the client connects (or reconnects) to a server: ``handler(client)``."""
    on_disconnect = Signal()
    """Emitted when the server stops answering or the client disconnects: ``handler(client)``."""
    on_add_device = Signal()
    """A device appeared: ``handler(client, device_id=str)``."""
    on_remove_device = Signal()
    """A device went away: ``handler(client, device_id=str)``."""
    on_frame = Signal()
    """A frame arrived: ``handler(client, frame=Frame, subscription=Subscription)``."""
    on_add_kinect = Signal()
    """streamkinect2 name: ``handler(client, kinect_id=str)``."""
    on_remove_kinect = Signal()
    """streamkinect2 name: ``handler(client, kinect_id=str)``."""
    on_depth_frame = Signal()
    """streamkinect2: ``handler(client, kinect_id=str, depth_frame=DepthFrame)``."""

    def __init__(
        self,
        control_endpoint: str,
        heartbeat_period: int,
        response_timeout: int,
        reconnect: bool,
    ) -> None:
        host, port = parse_endpoint(control_endpoint)
        self._control_host = host
        self.control_endpoint = make_endpoint(host, port)
        if heartbeat_period <= 0 or response_timeout <= 0:
            raise UsageError("heartbeat_period and response_timeout must be positive (ms)")
        self.heartbeat_period = heartbeat_period
        """Milliseconds between who/me heartbeats."""
        self.response_timeout = response_timeout
        """Milliseconds to wait for a reply before the server counts as gone."""
        self.reconnect = reconnect
        self.is_connected = False
        self._view = ServerView(self._fix_endpoint)
        self._resolved: dict[str, bool] = {}
        self._clock_sync = ClockSync()

    # -- the server's clock ----------------------------------------------------------------
    @property
    def clock(self) -> ClockEstimate | None:
        """The latest estimate of the server's clock against ours (server minus ours), or
        None while none has been made or when the server has no ``time`` request."""
        return self._clock_sync.estimate

    def local_time_ns(self, server_ns: int) -> int | None:
        """A server timestamp (``frame.host_time_ns``) in our clock; None while the offset is
        unknown."""
        est = self._clock_sync.estimate
        return est.to_local(server_ns) if est is not None else None

    # -- what the server told us ----------------------------------------------------------
    @property
    def server_name(self) -> str | None:
        """The server's name, or None before its first reply."""
        return self._view.name

    @property
    def endpoints(self) -> dict[EndpointType, str]:
        """Server endpoints keyed by :class:`EndpointType` (at least ``control``)."""
        eps = {EndpointType.control: self.control_endpoint}
        for name, ep in self._view.endpoints.items():
            if name in EndpointType.__members__:
                eps[EndpointType[name]] = ep
        return eps

    @property
    def devices(self) -> dict[str, DeviceRecord]:
        """The server's devices by id, as of the last who/me."""
        return dict(self._view.devices)

    @property
    def kinect_ids(self) -> list[str]:
        """streamkinect2 name: the ids of the server's devices."""
        return list(self._view.devices)

    def _fix_endpoint(self, endpoint: str) -> str:
        try:
            host, port = parse_endpoint(endpoint)
        except UsageError:
            return endpoint
        if host not in self._resolved:
            self._resolved[host] = resolvable(host)
        if not self._resolved[host]:
            return make_endpoint(self._control_host, port)
        return make_endpoint(host, port)

    def _stream_endpoint(self, device_id: str, kind: StreamKind) -> str:
        record = self._view.devices.get(device_id)
        if record is None:
            known = ", ".join(self._view.devices) or "none"
            raise UsageError(f"device {device_id!r} is not on this server (devices: {known})")
        ep = record.endpoints.get(kind.value)
        if ep is None:
            raise UsageError(f"device {device_id!r} has no {kind.value} stream")
        return ep

    def _moved_endpoint(self, sub: SubscriptionBase) -> str | None:
        """The endpoint *sub* must move to after a who/me, or None if it stays (or its device
        is gone: ZeroMQ keeps trying the old endpoint until the device returns)."""
        try:
            endpoint = self._stream_endpoint(sub.device_id, sub.kind)
        except UsageError:
            return None
        return endpoint if endpoint != sub.endpoint else None

    # -- events ---------------------------------------------------------------------------
    def _set_connected(self, connected: bool) -> None:
        if connected == self.is_connected:
            return
        self.is_connected = connected
        (self.on_connect if connected else self.on_disconnect).send(self)

    def _apply_me(self, payload: dict[str, Any] | None) -> list[str]:
        """Digest a me payload, fire device signals; returns ids whose endpoints changed."""
        added, removed, changed = self._view.apply_me(payload)
        for dev in added:
            self.on_add_device.send(self, device_id=dev)
            self.on_add_kinect.send(self, kinect_id=dev)
        for dev in removed:
            self.on_remove_device.send(self, device_id=dev)
            self.on_remove_kinect.send(self, kinect_id=dev)
        return added + changed

    def _reply(
        self, sent: MessageType, frames: Sequence[bytes]
    ) -> tuple[MessageType, Any, list[str]]:
        """Digest the server's reply to a *sent* request: its type, its payload, and (for a
        me) the ids of the devices whose endpoints changed. ``ProtocolError`` for an error
        reply, or one that does not answer *sent*."""
        rtype, payload, parts = parse_reply(frames)
        changed: list[str] = []
        if rtype is MessageType.error:
            raise ProtocolError(f"server error: {(payload or {}).get('reason', 'unknown error')}")
        if rtype is MessageType.me:
            changed = self._apply_me(payload)
            self._set_connected(True)
        elif rtype is MessageType.pong:
            self._set_connected(True)
        elif rtype is MessageType.calibration_reply and sent is MessageType.calibration:
            return rtype, (payload, parts), changed
        elif rtype is MessageType.keyframe_reply and sent is MessageType.keyframe:
            return rtype, payload, changed
        elif rtype is MessageType.time_reply and sent is MessageType.time:
            t = (payload or {}).get("t_ns")
            if type(t) is not int:
                raise ProtocolError("time reply needs an integer t_ns")
            return rtype, t, changed
        elif rtype is not MessageType.stats_reply:
            raise ProtocolError(f"unexpected reply {rtype.name} to {sent.name}")
        return rtype, payload, changed

    def _handle_frame(self, sub: SubscriptionBase, parts: Sequence[Any]) -> None:
        """On the I/O side: check the header, count, queue. Decoding waits for whoever takes
        the frame (``get``/``latest``, on their thread, so codecs run on every core and frames
        the queue drops are never decoded), unless a signal handler needs it decoded now."""
        try:
            encoded = parse_encoded(parts)
        except ProtocolError as exc:
            sub._bad(exc)
            return
        sub.stats.record(
            encoded.header, memoryview(parts[0]).nbytes + encoded.nbytes, time.time_ns()
        )
        item: Frame | EncodedFrame = encoded
        if sub.decode and is_video(encoded.header.codec):
            ask = functools.partial(self._ask_keyframe, sub.device_id, sub.kind)
            video = decode_video(sub._video, encoded, sub._bad, ask)
            if video is None:
                return
            item = video
        wants_depth = encoded.kind is StreamKind.depth and bool(self.on_depth_frame.receivers)
        decode_now = self.on_frame.receivers or wants_depth
        if sub.decode and isinstance(item, EncodedFrame) and decode_now:
            try:
                item = encoded.lazy() if sub.decode == "lazy" else encoded.decode()
            except ProtocolError as exc:
                sub._bad(exc)
                return
        sub._push(item)
        if self.on_frame.receivers:
            self.on_frame.send(self, frame=item, subscription=sub)
        if sub.decode and wants_depth and isinstance(item, Frame):
            arr = item.array
            self.on_depth_frame.send(
                self,
                kinect_id=item.device_id,
                depth_frame=DepthFrame(arr.data, (arr.shape[1], arr.shape[0])),
            )

    def _ask_keyframe(self, device_id: str, kind: StreamKind) -> None:
        """Send a keyframe request without waiting for its reply (from the receiving side)."""
        raise NotImplementedError
