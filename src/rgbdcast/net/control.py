"""The control endpoint: a REP socket answering who/ping/stats on its own thread."""

from __future__ import annotations

import logging
import threading
from typing import Any

import zmq

from ..protocol.control import MAX_CONTROL_BYTES, ControlResponder
from .security import ServerKeys, secure_server
from .sockets import bind_tcp

__all__ = ["ControlEndpoint"]

log = logging.getLogger(__name__)


class ControlEndpoint:
    """Binds a REP socket and answers every request through a :class:`ControlResponder`.

    A single frame above twice the protocol's limit makes ZeroMQ drop the peer before anything
    is buffered (``MAXMSGSIZE``); a message between the limit and that is answered with a
    ``too_large`` error, unparsed.
    """

    def __init__(
        self,
        ctx: zmq.Context[Any],
        bind_host: str,
        port: int,
        responder: ControlResponder,
        secure: ServerKeys | None = None,
    ) -> None:
        self._responder = responder
        self._stop = threading.Event()
        sock = ctx.socket(zmq.REP)
        secure_server(sock, secure)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.MAXMSGSIZE, 2 * MAX_CONTROL_BYTES)
        sock.setsockopt(zmq.RCVHWM, 100)
        sock.setsockopt(zmq.SNDHWM, 100)
        self.port = bind_tcp(sock, bind_host, port)
        self._sock: zmq.Socket[Any] = sock  # owned by the control thread from start() on
        self._thread = threading.Thread(target=self._run, name="rgbdcast-control", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 1.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        elif not self._thread.ident:
            self._sock.close(0)

    def _run(self) -> None:
        sock = self._sock
        errors_seen = 0
        try:
            while not self._stop.is_set():
                if not sock.poll(100, zmq.POLLIN):
                    continue
                frames = sock.recv_multipart()
                reply = self._responder.respond(frames)
                sock.send_multipart(reply)
                total = sum(self._responder.counters.errors.values())
                if total > errors_seen:
                    if errors_seen == 0 or total in (10, 100, 1000) or total % 10000 == 0:
                        log.warning(
                            "bad control message (%d so far): %s",
                            total,
                            self._responder.last_error,
                        )
                    errors_seen = total
        except zmq.ZMQError as exc:
            if not self._stop.is_set():
                log.error("control endpoint failed: %s", exc)
        finally:
            sock.close(0)
