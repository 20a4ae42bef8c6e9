"""The blocking client's control requests: one REQ socket, one request in flight, "lazy pirate".

How this works: requests wait in a bounded queue and go out one at a time (REQ/REP allows no
more). A request that cannot be sent yet (no connection to the server) is retried until its reply
timeout, which counts from the first attempt; a request unanswered within the timeout fails with
:class:`~rgbdcast.errors.ServerTimeout`, and the socket is closed and opened again, since a REQ
socket that lost its reply can never send again. Everything here runs on the client's I/O thread,
which owns the socket.
"""

from __future__ import annotations

import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import zmq

from .errors import ServerTimeout, UsageError
from .net.security import ClientKeys
from .net.sockets import open_control
from .protocol.control import MessageType, make_msg

__all__ = ["MAX_PENDING", "ControlChannel", "Request"]

MAX_PENDING = 64
"""Requests that may wait for their turn; one more fails at once."""


@dataclass
class Request:
    mtype: MessageType
    payload: dict[str, Any] | None = None
    future: Future[Any] = field(default_factory=Future)
    sent_at: float = 0.0
    heartbeat: bool = False
    sent_ns: int = 0
    """Our wall clock when the request last went out (clock probes)."""
    received_ns: int = 0
    """Our wall clock when its reply was read."""


class ControlChannel:
    """The control requests of one client to *endpoint*, registered on the I/O thread's
    *poller*; replies and timeouts are the caller's to handle (:meth:`reply`, :meth:`expired`)."""

    def __init__(
        self,
        ctx: zmq.Context[Any],
        endpoint: str,
        curve: ClientKeys | None,
        timeout_ms: int,
        poller: zmq.Poller,
    ) -> None:
        self._ctx, self._endpoint, self._curve = ctx, endpoint, curve
        self.timeout_ms = timeout_ms
        self.timeout_s = timeout_ms / 1000
        self._poller = poller
        self.pending: deque[Request] = deque()
        self.inflight: Request | None = None
        self.sock: zmq.Socket[Any] | None = None
        self.reopen()

    def reopen(self) -> None:
        if self.sock is not None:
            self._poller.unregister(self.sock)
            self.sock.close(0)
        self.sock = open_control(self._ctx, self._endpoint, self._curve)
        self._poller.register(self.sock, zmq.POLLIN)

    def add(self, request: Request) -> None:
        if len(self.pending) >= MAX_PENDING:
            request.future.set_exception(UsageError("too many requests waiting"))
            return
        self.pending.append(request)

    @property
    def beating(self) -> bool:
        """Whether a heartbeat is already waiting or in flight."""
        return any(r.heartbeat for r in self.pending) or bool(
            self.inflight and self.inflight.heartbeat
        )

    def send_next(self) -> bool:
        """Send the next request if none is in flight; True if one waits for the socket (REQ
        has no connection to the server right now: sending would block this thread)."""
        if self.inflight is not None or not self.pending or self.sock is None:
            return False
        request = self.pending[0]
        now = time.monotonic()
        if not request.sent_at:
            request.sent_at = now  # the reply timeout counts from the first attempt
        try:
            msg = make_msg(request.mtype, request.payload)
            request.sent_ns = time.time_ns()
            self.sock.send_multipart(msg, zmq.NOBLOCK)
        except zmq.Again:
            if now - request.sent_at < self.timeout_s:
                return True
        self.inflight = self.pending.popleft()
        return False

    def deadline(self) -> float | None:
        """When the request in flight times out, if one is."""
        return self.inflight.sent_at + self.timeout_s if self.inflight is not None else None

    def reply(self) -> tuple[Request | None, list[bytes]]:
        """The reply that arrived and the request it answers (None if none was in flight)."""
        assert self.sock is not None
        frames = self.sock.recv_multipart()
        request, self.inflight = self.inflight, None
        if request is not None:
            request.received_ns = time.time_ns()
        return request, frames

    def expired(self) -> Request | None:
        """The request in flight, failed with ServerTimeout, if its time is up (the socket is
        then opened afresh)."""
        deadline = self.deadline()
        if deadline is None or time.monotonic() < deadline:
            return None
        request, self.inflight = self.inflight, None
        assert request is not None
        request.future.set_exception(
            ServerTimeout(f"{self._endpoint} did not answer within {self.timeout_ms} ms")
        )
        self.reopen()
        return request

    def close(self, reason: str) -> None:
        """Fail every request with ServerTimeout(*reason*) and close the socket."""
        for request in ([self.inflight] if self.inflight else []) + list(self.pending):
            if not request.future.done():
                request.future.set_exception(ServerTimeout(reason))
        self.inflight = None
        self.pending.clear()
        if self.sock is not None:
            self._poller.unregister(self.sock)
            self.sock.close(0)
            self.sock = None
