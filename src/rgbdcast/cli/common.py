"""What the ``rgbdcast`` command modules share: the parser that errs in one line, argument types,
endpoint, key and Zenoh arguments, a connected client, and stopping on Ctrl-C."""

from __future__ import annotations

import argparse
import contextlib
import select
import signal
import socket
import time
from pathlib import Path
from typing import Any, NoReturn

from ..errors import UsageError
from ..frames import StreamKind
from ..net.addresses import DEFAULT_CONTROL_PORT
from ..outlets.zenoh import ZenohOptions

__all__ = [
    "DEFAULT_ENDPOINT",
    "ROS2_ROUTER",
    "OneLineParser",
    "StopRequest",
    "add_zenoh_options",
    "add_zenoh_source",
    "check_domain",
    "client_keys",
    "connect",
    "endpoint_arg",
    "install_stop_signals",
    "secure_arg",
    "size_type",
    "streams_type",
    "wait_until_stopped",
    "zenoh_options",
]

DEFAULT_ENDPOINT = f"tcp://127.0.0.1:{DEFAULT_CONTROL_PORT}"

ROS2_ROUTER = "tcp/127.0.0.1:7447"
"""Where rmw_zenoh's router (``ros2 run rmw_zenoh_cpp rmw_zenohd``) listens by default."""


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a bad argument is one line and a hint, not the whole usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


# -- argument types -----------------------------------------------------------------------------
def size_type(text: str) -> tuple[int, int]:
    """``WIDTHxHEIGHT``."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
        return w, h
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT, got {text!r}") from None


def bitrate_type(text: str) -> int:
    """Bits per second: ``4000000``, ``4M``, ``800k``."""
    scale = {"k": 1_000, "m": 1_000_000, "g": 1_000_000_000}.get(text[-1:].lower(), 1)
    try:
        return int(float(text[:-1] if scale > 1 else text) * scale)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a bitrate like 4M or 800k, got {text!r}"
        ) from None


def streams_type(text: str) -> list[StreamKind]:
    """A comma list of stream kinds."""
    try:
        return [StreamKind(s.strip()) for s in text.split(",") if s.strip()]
    except ValueError:
        names = ",".join(k.value for k in StreamKind)
        raise argparse.ArgumentTypeError(f"streams are a comma list of {names}") from None


# -- servers and their keys ---------------------------------------------------------------------
def endpoint_arg(p: argparse.ArgumentParser, optional: bool = True) -> None:
    """The server's control endpoint (optional: the local default) and ``--secure DIR``."""
    p.add_argument(
        "endpoint",
        nargs="?" if optional else None,
        default=DEFAULT_ENDPOINT,
        help=f"server control endpoint, tcp://HOST:PORT or HOST[:PORT] ({DEFAULT_ENDPOINT})",
    )
    secure_arg(p)


def secure_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--secure",
        metavar="DIR",
        default=None,
        help="for a server started with --secure: DIR holds server.key and our "
        "client.key_secret (rgbdcast keygen)",
    )


def client_keys(args: argparse.Namespace) -> Any:
    """The client keys asked for with --secure DIR, or None."""
    folder = getattr(args, "secure", None)
    if not folder:
        return None
    from ..net.security import ClientKeys

    return ClientKeys.from_dir(folder)


def connect(endpoint: str, curve: Any = None) -> Any:
    """A :class:`~rgbdcast.client.Client` connected to *endpoint* (no reconnecting)."""
    from ..client import Client

    client = Client(endpoint, reconnect=False, curve=curve)
    client.connect(timeout=3.0)
    return client


# -- stopping -----------------------------------------------------------------------------------
class StopRequest:
    """Set by Ctrl-C or SIGTERM; the main thread waits on it.

    Not a ``threading.Event``: a signal handler runs on the main thread between two bytecodes,
    and when that is inside ``Event.wait`` while it holds the event's lock, ``Event.set()`` in the
    handler waits for that lock forever (the command then never stops). Here the handler only
    stores a flag and writes a byte to a socket, neither of which takes a lock."""

    def __init__(self) -> None:
        self._requested = False
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)

    def set(self) -> None:
        self._requested = True
        with contextlib.suppress(OSError):  # full (a byte is waiting already) or closed
            self._wake_w.send(b"\0")

    def is_set(self) -> bool:
        return self._requested

    def wait(self, timeout: float) -> bool:
        """Block until stop is requested or *timeout* seconds pass; return :meth:`is_set`."""
        if not self._requested:
            with contextlib.suppress(OSError, ValueError):
                select.select([self._wake_r], [], [], max(timeout, 0.0))
                self._wake_r.recv(64)
        return self._requested


def install_stop_signals() -> StopRequest:
    """Ctrl-C, SIGTERM (and SIGBREAK on Windows) set the returned request instead of raising."""
    stop = StopRequest()

    def handler(signum: int, frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGINT, handler)
    for name in ("SIGTERM", "SIGBREAK"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), handler)
    return stop


def wait_until_stopped(duration: float | None) -> None:
    """Return on Ctrl-C or SIGTERM, or after *duration* seconds when given."""
    stop = install_stop_signals()
    started = time.monotonic()
    while not stop.wait(0.2):
        if duration is not None and time.monotonic() - started >= duration:
            break


# -- Zenoh --------------------------------------------------------------------------------------
def add_zenoh_options(p: argparse.ArgumentParser, prefix: str = "") -> None:
    """``--[prefix]connect``, ``--[prefix]listen``, ``--[prefix]mode``, multicast and TLS."""
    p.add_argument(
        f"--{prefix}connect",
        action="append",
        default=[],
        metavar="ENDPOINT",
        help="Zenoh endpoint to connect to, e.g. tcp/10.0.0.5:7447 (repeatable)",
    )
    p.add_argument(
        f"--{prefix}listen",
        action="append",
        default=[],
        metavar="ENDPOINT",
        help="Zenoh endpoint to listen on, e.g. tcp/0.0.0.0:7447 (repeatable)",
    )
    p.add_argument(f"--{prefix}mode", choices=["peer", "client"], default="peer", help="Zenoh mode")
    p.add_argument(
        f"--{prefix}multicast",
        action="store_true",
        help="let Zenoh scout for peers by multicast (off by default)",
    )
    p.add_argument(
        f"--{prefix}tls",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a Zenoh TLS setting, e.g. root_ca_certificate=ca.pem (repeatable)",
    )


def zenoh_options(
    args: argparse.Namespace, prefix: str = "", mode: str | None = None, ros2: bool = False
) -> ZenohOptions:
    """The Zenoh options given with ``--[prefix]connect`` and the rest; for ROS 2 with no
    endpoint given, connect to rmw_zenoh's router on this machine."""
    attr = prefix.replace("-", "_")
    connect_to = tuple(getattr(args, f"{attr}connect"))
    listen = tuple(getattr(args, f"{attr}listen"))
    if ros2 and not (connect_to or listen):
        connect_to = (ROS2_ROUTER,)
    tls = {}
    for item in getattr(args, f"{attr}tls"):
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise UsageError(f"--{prefix}tls takes NAME=VALUE, got {item!r}")
        tls[name] = value
    return ZenohOptions(
        mode=mode or getattr(args, f"{attr}mode"),
        connect=connect_to,
        listen=listen,
        multicast=getattr(args, f"{attr}multicast"),
        tls=tls,
    )


def check_domain(domain: int) -> int:
    if not 0 <= domain <= 232:
        raise UsageError(f"--domain must be 0..232 (a ROS_DOMAIN_ID), got {domain}")
    return domain


def add_zenoh_source(p: argparse.ArgumentParser) -> None:
    """``--zenoh KEYEXPR`` and ``--connect ENDPOINT``: watch Zenoh instead of a server."""
    p.add_argument(
        "--zenoh",
        metavar="KEYEXPR",
        default=None,
        help="watch the streams matching a Zenoh key expression instead, e.g. 'rgbdcast/**' "
        "or 'rgbdcast/lab/*/depth' (with --connect)",
    )
    p.add_argument(
        "--connect",
        action="append",
        default=[],
        metavar="ENDPOINT",
        help="Zenoh router or peer for --zenoh, e.g. tcp/10.0.0.5:7447",
    )


def add_foxglove_options(p: argparse.ArgumentParser, *, flag: bool) -> None:
    """The Foxglove outlet's options. With *flag* (``bridge``, whose endpoints are positional)
    ``--foxglove`` takes no value and ``--foxglove-listen`` says where; otherwise (``serve``)
    ``--foxglove [[HOST:]PORT]`` says both."""
    where = "127.0.0.1:8765 (the Foxglove app's default; a LAN address only when asked)"
    if flag:
        p.add_argument(
            "--foxglove", action="store_true", help="serve the streams to Foxglove (live)"
        )
        p.add_argument(
            "--foxglove-listen",
            metavar="[HOST:]PORT",
            default="127.0.0.1:8765",
            help=f"where the Foxglove WebSocket server listens (default {where})",
        )
    else:
        p.add_argument(
            "--foxglove",
            nargs="?",
            const="127.0.0.1:8765",
            default=None,
            metavar="[HOST:]PORT",
            help=f"also serve the streams to Foxglove, live (default {where}; [foxglove] extra)",
        )
    p.add_argument(
        "--foxglove-backlog",
        type=int,
        default=32,
        metavar="N",
        help="messages queued for one Foxglove client before its oldest are dropped (32)",
    )
    p.add_argument(
        "--foxglove-decimate",
        type=int,
        default=2,
        metavar="N",
        help="point cloud: every N-th pixel of every N-th row (default 2)",
    )
    p.add_argument("--foxglove-tls-cert", metavar="PEM", help="serve wss:// with this certificate")
    p.add_argument("--foxglove-tls-key", metavar="PEM", help="... and this PKCS#8 key")
    p.add_argument(
        "--foxglove-allow-insecure",
        action="store_true",
        help="let a --secure server serve Foxglove unencrypted off loopback",
    )


def foxglove_options(args: argparse.Namespace, address: str) -> Any:
    """The :class:`~rgbdcast.outlets.foxglove.FoxgloveOptions` the flags ask for."""
    from ..outlets.foxglove import FoxgloveOptions

    pem = {}
    for name in ("tls_cert", "tls_key"):
        path = getattr(args, f"foxglove_{name}")
        if path is not None:
            try:
                pem[name] = Path(path).read_bytes()
            except OSError as exc:
                raise UsageError(f"cannot read {path}: {exc.strerror}") from exc
    return FoxgloveOptions(
        address=address,
        backlog=args.foxglove_backlog,
        decimate=args.foxglove_decimate,
        allow_insecure=args.foxglove_allow_insecure,
        **pem,
    )
