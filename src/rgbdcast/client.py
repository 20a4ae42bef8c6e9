"""The blocking client: ``Client`` and its ``Subscription``.

How this works: ``connect()`` starts one I/O thread that owns every socket of the client (the
control REQ socket and one SUB socket per subscription). Calls from other threads reach it as
small commands on a queue, with a socketpair byte to wake its poller, and wait on a future.
The I/O thread sends a who every ``heartbeat_period`` ms; a request unanswered after
``response_timeout`` ms closes and reopens the REQ socket (the "lazy pirate" pattern,
:mod:`rgbdcast._requests`), marks the server gone (``on_disconnect``) and, with ``reconnect``
on, keeps asking until it answers again (``on_connect``). Frames are checked on the I/O thread
into each subscription's small newest-wins queue (:class:`Subscription`, shared with the other
clients in :mod:`rgbdcast._clientbase`) and decoded by whoever takes them; signals fire on the
I/O thread.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, Literal, overload

import zmq

from ._clientbase import ClientBase, Decode, Subscription
from ._clientclock import CLOCK_PERIOD_S, ClientClock
from ._clientgeo import ClientGeometry
from ._osthreads import name_native_thread
from ._requests import ControlChannel, Request
from .errors import ProtocolError, ServerTimeout, UsageError
from .frames import Frame, StreamKind
from .net.security import ClientKeys
from .net.sockets import open_subscriber
from .protocol.control import MessageType
from .protocol.envelope import EncodedFrame

__all__ = ["Client", "Subscription"]

log = logging.getLogger("rgbdcast.client")

SEND_RETRY_MS = 20  # how often a request waiting for a connection to the server is retried


class Client(ClientClock, ClientGeometry, ClientBase):
    """Blocking client for an rgbdcast (or streamkinect2) server.

    ::

        with Client("tcp://127.0.0.1:5606") as client:
            print(client.server_name, list(client.devices))
            print("rtt", client.ping())
            for frame in client.subscribe("mock0", "depth"):
                print(frame.seq, frame.array.max())

    *control_endpoint* is the server's control endpoint (``tcp://host:port`` or ``host:port``).
    With *connect_immediately* the constructor connects. *heartbeat_period* and
    *response_timeout* are in milliseconds. *reconnect* (default on) keeps the client alive
    across server restarts. *zmq_ctx* and *io_loop* exist for streamkinect2 compatibility.
    """

    def __init__(
        self,
        control_endpoint: str,
        connect_immediately: bool = False,
        zmq_ctx: zmq.Context[Any] | None = None,
        io_loop: Any = None,
        *,
        heartbeat_period: int = 1000,
        response_timeout: int = 1000,
        reconnect: bool = True,
        curve: ClientKeys | None = None,
    ) -> None:
        super().__init__(control_endpoint, heartbeat_period, response_timeout, reconnect)
        self.curve = curve
        """The server's public key and ours, for a server started with ``--secure``."""
        self._ctx = zmq_ctx or zmq.Context.instance()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._cmds: queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]]] = queue.SimpleQueue()
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None
        self._subs: list[Subscription[Any]] = []
        self._next_clock = 0.0
        self._init_geometry()
        if connect_immediately:
            self.connect()

    # -- public API -------------------------------------------------------------------------
    def connect(self, timeout: float | None = None) -> None:
        """Connect and wait for the server's first who/me (``ServerTimeout`` if none comes)."""
        if self._thread is not None:
            log.warning("client already connected")
            return
        self._stop.clear()
        self._close_wake()  # left by an I/O thread that ended by itself
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._thread = threading.Thread(target=self._run, name="rgbdcast-client", daemon=True)
        self._thread.start()
        try:
            self._call(MessageType.who, timeout)
        except Exception:
            self.disconnect()
            raise

    def disconnect(self) -> None:
        """Close every socket of this client and stop its I/O thread."""
        thread, self._thread = self._thread, None
        if thread is None and self._wake_r is None:
            log.warning("client not connected")
            return
        self._stop.set()
        if thread is not None:  # None: it ended by itself (server gone, no reconnect)
            self._wake()
        if thread is not threading.current_thread():
            if thread is not None:
                thread.join(2.0)
            self._close_wake()

    def _close_wake(self) -> None:
        for s in (self._wake_r, self._wake_w):
            if s is not None:
                s.close()
        self._wake_r = self._wake_w = None

    close = disconnect

    def __enter__(self) -> Client:
        if self._thread is None:
            self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._thread is not None:
            self.disconnect()

    def ping(
        self, pong_cb: Callable[[], Any] | None = None, timeout: float | None = None
    ) -> float | None:
        """Ping the server; returns the round-trip time in seconds and calls *pong_cb*.

        Called from a signal handler (on the client's own thread) it does not wait: it returns
        None and *pong_cb* is called when the pong arrives.
        """
        if threading.current_thread() is self._thread:
            fut = self._submit(MessageType.ping)
            if pong_cb is not None:
                fut.add_done_callback(lambda f: f.exception() is None and pong_cb())
            return None
        rtt: float = self._call(MessageType.ping, timeout)
        if pong_cb is not None:
            pong_cb()
        return rtt

    def who(self, timeout: float | None = None) -> dict[str, Any]:
        """Ask who/me now; returns the raw me payload."""
        payload: dict[str, Any] = self._call(MessageType.who, timeout)
        return payload

    def server_stats(self, timeout: float | None = None) -> dict[str, Any]:
        """The server's counters (an rgbdcast extension message)."""
        payload: dict[str, Any] = self._call(MessageType.stats, timeout)
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
    ) -> Subscription[Frame]: ...

    @overload
    def subscribe(
        self,
        device_id: str,
        stream: StreamKind | str = ...,
        *,
        queue_size: int = ...,
        strict: bool = ...,
        decode: Literal[False],
    ) -> Subscription[EncodedFrame]: ...

    @overload
    def subscribe(
        self,
        device_id: str,
        stream: StreamKind | str = ...,
        *,
        queue_size: int = ...,
        strict: bool = ...,
        decode: Decode,
    ) -> Subscription[Any]: ...

    def subscribe(
        self,
        device_id: str,
        stream: StreamKind | str = StreamKind.depth,
        *,
        queue_size: int = 2,
        strict: bool = False,
        decode: Decode = True,
    ) -> Subscription[Any]:
        """Start receiving one stream of one device. *decode*: frames decoded when taken
        (True), never (False: ``EncodedFrame``), or when their pixels are first read
        (``"lazy"``: frames a consumer drops are never decoded)."""
        kind = StreamKind(stream)
        endpoint = self._stream_endpoint(device_id, kind)
        sub: Subscription[Any] = Subscription(self, device_id, kind, queue_size, strict, decode)
        self._command(lambda: self._attach(sub, endpoint)).result(timeout=5)
        return sub

    def unsubscribe(self, sub: Subscription[Any]) -> None:
        if sub.closed:
            return
        if self._thread is None or threading.current_thread() is self._thread:
            self._detach(sub)
            return
        self._command(lambda: self._detach(sub)).result(timeout=5)

    @property
    def subscriptions(self) -> list[Subscription[Any]]:
        return list(self._subs)

    def enable_depth_frames(self, kinect_id: str) -> Subscription[Any]:
        """streamkinect2: start depth frames of *kinect_id* (``on_depth_frame`` fires for each).

        :raises ValueError: if *kinect_id* does not correspond to a connected device
        """
        return self.subscribe(kinect_id, StreamKind.depth)

    # -- plumbing between threads ---------------------------------------------------------
    def _wake(self) -> None:
        if self._wake_w is not None:
            with contextlib.suppress(OSError):
                self._wake_w.send(b"x")

    def _command(self, fn: Callable[[], Any]) -> Future[Any]:
        """Run *fn* on the I/O thread; its future fails if the client shuts down first."""
        if self._thread is None:
            raise UsageError("client is not connected")
        fut: Future[Any] = Future()
        self._cmds.put((fn, fut))
        self._wake()
        return fut

    def _submit(self, mtype: MessageType, payload: dict[str, Any] | None = None) -> Future[Any]:
        request = Request(mtype, payload)
        self._command(lambda: self._channel.add(request))
        return request.future

    def _call(
        self, mtype: MessageType, timeout: float | None, payload: dict[str, Any] | None = None
    ) -> Any:
        if threading.current_thread() is self._thread:
            raise UsageError("blocking calls cannot be made from a signal handler")
        fut = self._submit(mtype, payload)
        wait = timeout if timeout is not None else self.response_timeout / 1000 * 3 + 1
        try:
            return fut.result(timeout=wait)
        except FutureTimeout:
            raise ServerTimeout(f"{self.control_endpoint} did not answer {mtype.name}") from None

    # -- the I/O thread -------------------------------------------------------------------
    def _run(self) -> None:
        name_native_thread("client-io")  # top -H, py-spy: apart from the caller's threads
        self._sockets: dict[Any, Subscription[Any]] = {}
        self._poller = zmq.Poller()
        assert self._wake_r is not None
        self._poller.register(self._wake_r.fileno(), zmq.POLLIN)
        channel = self._channel = ControlChannel(
            self._ctx, self.control_endpoint, self.curve, self.response_timeout, self._poller
        )
        next_beat = time.monotonic() + self.heartbeat_period / 1000
        try:
            while not self._stop.is_set():
                now = time.monotonic()
                if now >= next_beat:
                    next_beat = now + self.heartbeat_period / 1000
                    if not channel.beating:
                        channel.add(Request(MessageType.who, heartbeat=True))
                    if self.is_connected and now >= self._next_clock:
                        self._next_clock = now + CLOCK_PERIOD_S
                        self._probe_clock(channel)
                unsent = channel.send_next()
                deadline = min(next_beat, channel.deadline() or next_beat)
                wait_ms = max(0, int((deadline - time.monotonic()) * 1000) + 1)
                if unsent:
                    wait_ms = min(wait_ms, SEND_RETRY_MS)
                events = dict(self._poller.poll(wait_ms))
                if self._wake_r.fileno() in events:
                    self._drain_commands()
                if channel.sock is not None and channel.sock in events:
                    self._on_reply(*channel.reply())
                for sock, sub in list(self._sockets.items()):
                    if sock in events:
                        self._drain_sub(sock, sub)
                if channel.expired() is not None:
                    self._on_timeout()
        except Exception:
            log.exception("client I/O thread failed")
        finally:
            self._shutdown()

    def _drain_commands(self) -> None:
        assert self._wake_r is not None
        try:
            while self._wake_r.recv(4096):
                pass
        except (BlockingIOError, InterruptedError):
            pass
        while True:
            try:
                fn, fut = self._cmds.get_nowait()
            except queue.Empty:
                return
            try:
                fut.set_result(fn())
            except Exception as exc:
                fut.set_exception(exc)

    def _on_reply(self, request: Request | None, frames: list[bytes]) -> None:
        if request is None:
            return
        rtt = time.monotonic() - request.sent_at
        try:
            rtype, payload, changed = self._reply(request.mtype, frames)
        except ProtocolError as exc:
            if request.mtype is MessageType.time:
                self._clock_sync.unsupported = True  # an older server: offset unknown
            if not request.future.done():
                request.future.set_exception(exc)
            if request.heartbeat:
                log.warning("bad heartbeat reply: %s", exc)
            return
        if rtype is MessageType.time_reply:
            self._clock_sync.probe(request.sent_ns, payload, request.received_ns)
        for sub in list(self._subs):  # _reattach moves a subscription to the end of the list
            if sub.device_id in changed:
                self._reattach(sub)
        request.future.set_result(rtt if rtype is MessageType.pong else payload)

    def _on_timeout(self) -> None:
        """The request in flight got no reply (it failed, the socket was reopened)."""
        if self.is_connected:
            log.warning("server %s stopped answering", self.control_endpoint)
        self._set_connected(False)
        if not self.reconnect:
            self._stop.set()

    def _attach(self, sub: Subscription[Any], endpoint: str) -> None:
        sock = open_subscriber(self._ctx, endpoint, self.curve)
        sub.endpoint = endpoint
        self._sockets[sock] = sub
        self._poller.register(sock, zmq.POLLIN)
        self._subs.append(sub)

    def _close_socket(self, sub: Subscription[Any]) -> None:
        for sock, s in list(self._sockets.items()):
            if s is sub:
                self._poller.unregister(sock)
                sock.close(0)
                del self._sockets[sock]
        if sub in self._subs:
            self._subs.remove(sub)

    def _detach(self, sub: Subscription[Any]) -> None:
        self._close_socket(sub)
        sub._mark_closed()

    def _reattach(self, sub: Subscription[Any]) -> None:
        endpoint = self._moved_endpoint(sub)
        if endpoint is not None:
            self._close_socket(sub)
            self._attach(sub, endpoint)

    def _drain_sub(self, sock: zmq.Socket[Any], sub: Subscription[Any]) -> None:
        for _ in range(64):
            if not int(sock.getsockopt(zmq.EVENTS)) & zmq.POLLIN:  # ~3 us; a raised Again ~9
                return
            try:
                parts = sock.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            self._handle_frame(sub, [p.buffer for p in parts])

    def request_keyframe(self, device_id: str, stream: StreamKind | str) -> None:
        """Ask a video stream for a keyframe soon, without waiting for the answer (what a
        subscription does by itself after a gap; for a forwarder that lost a unit)."""
        payload = {"device": device_id, "stream": StreamKind(stream).value}
        self._submit(MessageType.keyframe, payload)

    def _ask_keyframe(self, device_id: str, kind: StreamKind) -> None:
        # on the I/O thread, which owns the control channel; the reply is not waited for
        payload = {"device": device_id, "stream": kind.value}
        self._channel.add(Request(MessageType.keyframe, payload))

    def _shutdown(self) -> None:
        self._channel.close("client disconnected")
        for sub in list(self._subs):
            self._detach(sub)
        self._drain_commands_on_exit()
        self._set_connected(False)
        self._thread = None

    def _drain_commands_on_exit(self) -> None:
        while True:
            try:
                _fn, fut = self._cmds.get_nowait()
            except queue.Empty:
                return
            fut.set_exception(UsageError("client disconnected"))
