"""How ZeroMQ sockets are made: the clients' (one place for their options and limits), and how
the server binds its own."""

from __future__ import annotations

from typing import Any, TypeVar

import zmq

from .security import ClientKeys, secure_client

__all__ = [
    "CONTROL_REPLY_MAX",
    "FRAME_MAX",
    "SUB_HWM",
    "bind_tcp",
    "open_control",
    "open_subscriber",
]

SUB_HWM = 2
"""Frames ZeroMQ may hold for a subscriber before it drops (the newest win)."""
CONTROL_REPLY_MAX = 16 * 1024 * 1024
"""A bigger control reply makes ZeroMQ drop the connection: no server sends one."""
FRAME_MAX = 512 * 1024 * 1024
"""A bigger frame part makes ZeroMQ drop the connection before buffering it."""

S = TypeVar("S", bound=zmq.Socket[Any])


def open_control(ctx: zmq.Context[S], endpoint: str, curve: ClientKeys | None = None) -> S:
    """A REQ socket to a control endpoint (a CURVE client if *curve* is given)."""
    sock = ctx.socket(zmq.REQ)
    secure_client(sock, curve)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.MAXMSGSIZE, CONTROL_REPLY_MAX)
    sock.connect(endpoint)
    return sock


def open_subscriber(ctx: zmq.Context[S], endpoint: str, curve: ClientKeys | None = None) -> S:
    """A SUB socket receiving every message of one data endpoint, newest first to survive."""
    sock = ctx.socket(zmq.SUB)
    secure_client(sock, curve)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVHWM, SUB_HWM)
    sock.setsockopt(zmq.MAXMSGSIZE, FRAME_MAX)
    sock.setsockopt(zmq.SUBSCRIBE, b"")
    sock.connect(endpoint)
    return sock


def bind_tcp(sock: zmq.Socket[Any], host: str, port: int = 0) -> int:
    """Bind *sock* to ``tcp://host:port`` (a free port when *port* is 0) and return the port.
    If the bind fails the socket is closed, nobody else owns it yet, and the error propagates."""
    try:
        if port:
            sock.bind(f"tcp://{host}:{port}")
            return port
        return sock.bind_to_random_port(f"tcp://{host}")
    except zmq.ZMQError:
        sock.close(0)
        raise
