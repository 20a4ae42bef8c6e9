"""``AsyncClient``: the asyncio twin of :class:`~rgbdcast.client.Client`.

It shares every decision with ``Client`` (``ClientBase``, ``ServerView``, ``StreamStats``) and
differs only in waiting: control requests are awaited with a timeout (the REQ socket is
replaced after a timeout), a heartbeat task sends who every ``heartbeat_period`` ms, and each
subscription has a receive task. Signals fire on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Any, Generic, Literal, TypeVar, cast, overload

import zmq
import zmq.asyncio

from ._clientbase import ClientBase, Decode, SubscriptionBase
from ._clientclock import CLOCK_PERIOD_S
from ._clientgeo import AsyncClientGeometry
from .errors import ProtocolError, ServerTimeout, UsageError
from .frames import Frame, StreamKind
from .net.security import ClientKeys
from .net.sockets import open_control, open_subscriber
from .protocol.clock import ClockEstimate
from .protocol.control import MessageType, make_msg
from .protocol.envelope import EncodedFrame

T = TypeVar("T", Frame, EncodedFrame)

__all__ = ["AsyncClient", "AsyncSubscription"]

log = logging.getLogger("rgbdcast.client")


class AsyncSubscription(SubscriptionBase, Generic[T]):
    """Frames of one device stream: ``async for frame in sub`` or ``await sub.get()``."""

    def __init__(
        self,
        client: AsyncClient,
        device_id: str,
        kind: StreamKind,
        queue_size: int,
        strict: bool,
        decode: Decode = True,
    ) -> None:
        super().__init__(device_id, kind, queue_size, strict, decode)
        self._client = client
        self._event = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._sock: zmq.asyncio.Socket | None = None

    def _push(self, item: Frame | EncodedFrame | ProtocolError) -> None:
        super()._push(item)
        self._event.set()

    async def get(self, timeout: float | None = None) -> T:
        """The next frame; ``TimeoutError`` after *timeout* s."""
        while not self._queue:
            if self.closed:
                raise UsageError("subscription is closed")
            self._event.clear()
            try:
                await asyncio.wait_for(self._event.wait(), timeout)
            except asyncio.TimeoutError:
                raise TimeoutError(f"no {self.kind.value} frame within {timeout} s") from None
        item = self._queue.popleft()
        resolved = self._resolve(item)
        if resolved is None:  # a bad frame on a lenient subscription: wait for the next
            return await self.get(timeout)
        return cast(T, resolved)

    async def latest(self, timeout: float | None = None) -> T | None:
        """The newest frame received so far (waiting up to *timeout* s for a first one)."""
        if self._latest is None and not self.closed:
            with contextlib.suppress(TimeoutError):
                await self.get(timeout)
        return cast("T | None", self._resolve_latest())

    async def __aiter__(self) -> AsyncIterator[T]:
        while not self.closed:
            try:
                yield await self.get()
            except UsageError:
                return

    async def close(self) -> None:
        await self._client.unsubscribe(self)


class AsyncClient(AsyncClientGeometry, ClientBase):
    """asyncio client; the same API as :class:`Client` with ``await``::

    async with AsyncClient("tcp://127.0.0.1:5606") as client:
        rtt = await client.ping()
        async for frame in client.subscribe("mock0", "depth"):
            ...
    """

    def __init__(
        self,
        control_endpoint: str,
        *,
        heartbeat_period: int = 1000,
        response_timeout: int = 1000,
        reconnect: bool = True,
        zmq_ctx: zmq.asyncio.Context | None = None,
        curve: ClientKeys | None = None,
    ) -> None:
        super().__init__(control_endpoint, heartbeat_period, response_timeout, reconnect)
        self.curve = curve
        self._ctx = zmq_ctx or zmq.asyncio.Context.instance()
        self._req: zmq.asyncio.Socket | None = None
        self._lock = asyncio.Lock()
        self._heartbeat: asyncio.Task[None] | None = None
        self._keyframe_tasks: set[asyncio.Task[Any]] = set()
        self._subs: list[AsyncSubscription[Any]] = []
        self._init_geometry()

    async def connect(self, timeout: float | None = None) -> None:
        """Connect and wait for the first who/me (``ServerTimeout`` if none comes)."""
        if self._req is not None:
            log.warning("client already connected")
            return
        self._open_req()
        try:
            await self._request(MessageType.who, timeout)
        except Exception:
            await self.disconnect()
            raise
        self._heartbeat = asyncio.get_running_loop().create_task(self._beat())

    async def disconnect(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat
            self._heartbeat = None
        for sub in list(self._subs):
            await self.unsubscribe(sub)
        if self._req is not None:
            self._req.close(0)
            self._req = None
        self._set_connected(False)

    async def __aenter__(self) -> AsyncClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.disconnect()

    async def ping(self, timeout: float | None = None) -> float:
        """Round-trip time in seconds."""
        t0 = time.monotonic()
        await self._request(MessageType.ping, timeout)
        return time.monotonic() - t0

    async def who(self, timeout: float | None = None) -> dict[str, Any]:
        payload: dict[str, Any] = await self._request(MessageType.who, timeout)
        return payload

    async def server_stats(self, timeout: float | None = None) -> dict[str, Any]:
        payload: dict[str, Any] = await self._request(MessageType.stats, timeout)
        return payload

    @overload
    def subscribe(
        self,
        device_id: str,
        stream: StreamKind | str = ...,
        *,
        queue_size: int = ...,
        strict: bool = ...,
        decode: Literal[True, "lazy"] = ...,
    ) -> AsyncSubscription[Frame]: ...

    @overload
    def subscribe(
        self,
        device_id: str,
        stream: StreamKind | str = ...,
        *,
        queue_size: int = ...,
        strict: bool = ...,
        decode: Literal[False],
    ) -> AsyncSubscription[EncodedFrame]: ...

    @overload
    def subscribe(
        self,
        device_id: str,
        stream: StreamKind | str = ...,
        *,
        queue_size: int = ...,
        strict: bool = ...,
        decode: Decode,
    ) -> AsyncSubscription[Any]: ...

    def subscribe(
        self,
        device_id: str,
        stream: StreamKind | str = StreamKind.depth,
        *,
        queue_size: int = 2,
        strict: bool = False,
        decode: Decode = True,
    ) -> AsyncSubscription[Any]:
        kind = StreamKind(stream)
        endpoint = self._stream_endpoint(device_id, kind)
        sub: AsyncSubscription[Any] = AsyncSubscription(
            self, device_id, kind, queue_size, strict, decode
        )
        self._attach(sub, endpoint)
        self._subs.append(sub)
        return sub

    async def unsubscribe(self, sub: AsyncSubscription[Any]) -> None:
        if sub.closed:
            return
        await self._detach(sub)
        if sub in self._subs:
            self._subs.remove(sub)
        sub.closed = True
        sub._event.set()

    # -- plumbing -----------------------------------------------------------------------------
    def _open_req(self) -> None:
        if self._req is not None:
            self._req.close(0)
        self._req = open_control(self._ctx, self.control_endpoint, self.curve)

    async def _request(
        self, mtype: MessageType, timeout: float | None, payload: dict[str, Any] | None = None
    ) -> Any:
        async with self._lock:
            if self._req is None:
                raise UsageError("client is not connected")
            wait = timeout if timeout is not None else self.response_timeout / 1000
            await self._req.send_multipart(make_msg(mtype, payload))
            try:
                frames = await asyncio.wait_for(self._req.recv_multipart(), wait)
            except asyncio.TimeoutError:
                self._open_req()
                self._set_connected(False)
                raise ServerTimeout(
                    f"{self.control_endpoint} did not answer {mtype.name}"
                ) from None
        _, payload, changed = self._reply(mtype, frames)
        for sub in list(self._subs):
            if sub.device_id in changed:
                await self._reattach(sub)
        return payload

    async def clock_offset(
        self, timeout: float | None = None, fresh: bool = False
    ) -> ClockEstimate | None:
        """The server's clock against ours (see :meth:`rgbdcast.client.Client.clock_offset`);
        None if the server cannot tell its time (an older server)."""
        if (self.clock is not None and not fresh) or self._clock_sync.unsupported:
            return self.clock
        self._clock_sync.reset_round()
        for _ in range(self._clock_sync.probes):
            t0 = time.time_ns()
            try:
                t_server = await self._request(MessageType.time, timeout)
            except ProtocolError:
                self._clock_sync.unsupported = True
                return None
            self._clock_sync.probe(t0, t_server, time.time_ns())
        return self.clock

    async def _beat(self) -> None:
        next_clock = 0.0
        while True:
            await asyncio.sleep(self.heartbeat_period / 1000)
            if self.is_connected and time.monotonic() >= next_clock:
                next_clock = time.monotonic() + CLOCK_PERIOD_S
                with contextlib.suppress(ServerTimeout):
                    await self.clock_offset(fresh=True)
            try:
                await self._request(MessageType.who, None)
            except ServerTimeout:
                if not self.reconnect:
                    await self.disconnect()
                    return
            except ProtocolError as exc:
                log.warning("bad heartbeat reply: %s", exc)

    def _ask_keyframe(self, device_id: str, kind: StreamKind) -> None:
        payload = {"device": device_id, "stream": kind.value}
        task = asyncio.get_running_loop().create_task(
            self._request(MessageType.keyframe, None, payload)
        )
        self._keyframe_tasks.add(task)  # held until done; its outcome matters to nobody
        task.add_done_callback(self._keyframe_done)

    def _keyframe_done(self, task: asyncio.Task[Any]) -> None:
        self._keyframe_tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.debug("keyframe request failed: %s", task.exception())

    def _attach(self, sub: AsyncSubscription[Any], endpoint: str) -> None:
        sock = open_subscriber(self._ctx, endpoint, self.curve)
        sub.endpoint = endpoint
        sub._sock = sock
        sub._task = asyncio.get_running_loop().create_task(self._receive(sub, sock))

    async def _detach(self, sub: AsyncSubscription[Any]) -> None:
        task, sub._task = sub._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _reattach(self, sub: AsyncSubscription[Any]) -> None:
        endpoint = self._moved_endpoint(sub)
        if endpoint is not None:
            await self._detach(sub)
            self._attach(sub, endpoint)

    async def _receive(self, sub: AsyncSubscription[Any], sock: zmq.asyncio.Socket) -> None:
        try:
            while True:
                parts = await sock.recv_multipart(copy=False)
                self._handle_frame(sub, [p.buffer for p in parts])
        finally:
            sock.close(0)
