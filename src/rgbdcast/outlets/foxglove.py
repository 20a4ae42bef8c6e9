"""Live viewing in Foxglove: ``serve --foxglove`` and ``bridge --foxglove``.

How this works: :class:`FoxgloveServer` is one Foxglove WebSocket server, run by Foxglove's own
SDK (``foxglove-sdk``, the ``[foxglove]`` extra) on a context of its own, so that several in one
process never share channels. Its ``message_backlog_size`` bounds what a client that stops
reading can hold (the SDK drops its oldest messages, never slows the others); a client that
connects again starts with an empty queue and gets the next frames, not a backlog.
:class:`FoxglovePublishing` gives each device its topics (:mod:`.foxglovedev`), and
:class:`FoxgloveOutlet` plugs them into a server's publisher taps; ``rgbdcast bridge`` feeds the
same publishing from the ZeroMQ clients of servers elsewhere. Topics: docs/foxglove.md.
"""

from __future__ import annotations

import ipaddress
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

from ..codecs.video import is_video
from ..devices.base import require
from ..errors import UsageError
from ..frames import StreamKind
from ..geometry.calibration import Calibration, Extrinsics
from ..net.addresses import parse_hostport
from .base import DevicePort, OutletHost, tap_device
from .foxglovedev import DeviceGeometry, StreamTopics
from .foxglovevideo import VideoTopics

__all__ = [
    "DEFAULT_BACKLOG",
    "DEFAULT_PORT",
    "FoxgloveOptions",
    "FoxgloveOutlet",
    "FoxglovePublishing",
    "FoxgloveServer",
]

log = logging.getLogger(__name__)

DEFAULT_PORT = 8765
DEFAULT_BACKLOG = 32
"""Messages queued per client (a few framesets of every topic): the bound on a slow client."""
_OUTBOX_LOGGER = "foxglove.websocket.connected_client.send_lossy"


@dataclass(frozen=True)
class FoxgloveOptions:
    """Where the Foxglove server listens (``[HOST:]PORT``, default 127.0.0.1:8765; 0 picks a
    free port), how many messages a client may have queued, TLS (PEM bytes: clients then use
    ``wss://``), whether a secure server may still serve it unencrypted off loopback, and the
    point cloud's decimation (every n-th pixel of every n-th row)."""

    address: str = f"127.0.0.1:{DEFAULT_PORT}"
    backlog: int = DEFAULT_BACKLOG
    tls_cert: bytes | None = None
    tls_key: bytes | None = None
    allow_insecure: bool = False
    decimate: int = 2

    def bind(self) -> tuple[str, int]:
        return parse_hostport(self.address, "127.0.0.1")

    def check(self, secure: bool) -> None:
        """Refuse what cannot work or would leak: a bad address or backlog, half a TLS pair,
        and a secure server's streams unencrypted on a network address."""
        host, _ = self.bind()
        if self.backlog < 1:
            raise UsageError("--foxglove-backlog needs at least 1 message")
        if not 1 <= self.decimate <= 16:
            raise UsageError("--foxglove-decimate is 1..16")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise UsageError("Foxglove TLS needs both a certificate and its key")
        if secure and self.tls_cert is None and not self.allow_insecure and not _loopback(host):
            raise UsageError(
                f"this server requires authenticated clients, but Foxglove clients on {host} "
                "would get every stream unencrypted; give --foxglove-tls-cert/--foxglove-tls-key, "
                "serve Foxglove on 127.0.0.1, or allow it (--foxglove-allow-insecure)"
            )


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _Listener:
    """The SDK's server listener: who subscribes to what (a new subscription to ``/tf`` makes
    the transforms go out at once)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.subscriptions: dict[tuple[int, str], int] = {}
        self.subscribed = 0
        self._tf_fresh = False

    def on_subscribe(self, client: Any, channel: Any) -> None:
        with self._lock:
            key = (int(client.id), str(channel.topic))
            self.subscriptions[key] = self.subscriptions.get(key, 0) + 1
            self.subscribed += 1
            self._tf_fresh = self._tf_fresh or channel.topic == "/tf"

    def on_unsubscribe(self, client: Any, channel: Any) -> None:
        with self._lock:
            key = (int(client.id), str(channel.topic))
            left = self.subscriptions.get(key, 0) - 1
            if left > 0:
                self.subscriptions[key] = left
            else:
                self.subscriptions.pop(key, None)

    def tf_fresh(self) -> bool:
        """True once after a client subscribed to ``/tf``."""
        with self._lock:
            fresh, self._tf_fresh = self._tf_fresh, False
            return fresh

    def clients(self) -> int:
        """Clients subscribed to something (the SDK's listener hears of nothing else)."""
        with self._lock:
            return len({c for c, _ in self.subscriptions})


class _OutboxFull(logging.Handler):
    """Counts the SDK's "outbox for client ... full" notices: a client fell a backlog behind
    and lost its oldest messages. The SDK gives at most one such notice every 30 s in a
    process, so the count says that it happened, not how often."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if "full" in record.getMessage():
            self.count += 1
            log.info("a Foxglove client is not keeping up: %s", record.getMessage())


def _hear_the_sdk(foxglove: Any) -> None:
    """Route the SDK's Rust log into Python's ``foxglove.*`` loggers, at WARNING except the
    slow-client notice that :class:`_OutboxFull` counts (kept from the root's handlers). The
    SDK would call ``logging.basicConfig`` where nothing is configured; a library must not, so
    a placeholder handler stands in on the root for that one call."""
    root = logging.getLogger()
    placeholder = logging.NullHandler() if not root.handlers else None
    if placeholder is not None:
        root.addHandler(placeholder)
    try:
        foxglove.set_log_level(logging.INFO)  # only the first call in a process has effect
    finally:
        if placeholder is not None:
            root.removeHandler(placeholder)
    sdk = logging.getLogger("foxglove")
    if sdk.level == logging.NOTSET:
        sdk.setLevel(logging.WARNING)
    outbox = logging.getLogger(_OUTBOX_LOGGER)
    outbox.setLevel(logging.INFO)
    outbox.propagate = False


class FoxgloveServer:
    """One Foxglove WebSocket server named *name* and its ``/tf`` channel."""

    def __init__(self, options: FoxgloveOptions, name: str) -> None:
        foxglove = require("foxglove", "foxglove")
        from foxglove.channels import FrameTransformsChannel

        host, port = options.bind()
        self.options = options
        self.context = foxglove.Context()
        self.listener = _Listener()
        self._outbox = _OutboxFull()
        _hear_the_sdk(foxglove)
        logging.getLogger(_OUTBOX_LOGGER).addHandler(self._outbox)
        try:
            self.server = foxglove.start_server(
                name=name,
                host=host,
                port=port,
                context=self.context,
                server_listener=self.listener,
                message_backlog_size=options.backlog,
                tls_cert=options.tls_cert,
                tls_key=options.tls_key,
            )
        except Exception as exc:  # the SDK's error: a port in use, a bad certificate
            logging.getLogger(_OUTBOX_LOGGER).removeHandler(self._outbox)
            raise UsageError(
                f"cannot start the Foxglove server on {host}:{port}: {exc} "
                "(choose another --foxglove port)"
            ) from exc
        self.host = host
        self.tf = FrameTransformsChannel("/tf", context=self.context)

    @property
    def port(self) -> int:
        return int(self.server.port)

    @property
    def url(self) -> str:
        scheme = "wss" if self.options.tls_cert is not None else "ws"
        return f"{scheme}://{self.host}:{self.port}"

    def stats(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "subscribed_clients": self.listener.clients(),  # the SDK tells of no bare connects
            "subscriptions": len(self.listener.subscriptions),
            "backlog": self.options.backlog,
            "slow_client_notices": self._outbox.count,
        }

    def close(self) -> None:
        logging.getLogger(_OUTBOX_LOGGER).removeHandler(self._outbox)
        self.tf.close()
        self.server.stop()


class FoxglovePublishing:
    """The devices shown on one :class:`FoxgloveServer`."""

    def __init__(self, server: FoxgloveServer) -> None:
        self.server = server
        self._lock = threading.Lock()
        self._streams: dict[str, dict[StreamKind, StreamTopics | VideoTopics]] = {}
        self._geometry: dict[str, DeviceGeometry] = {}

    def add_device(
        self,
        device: str,
        kinds: list[StreamKind],
        calibration: Callable[[], Calibration | None] = lambda: None,
        table: Callable[[str], Any] = lambda name: None,
        placed: tuple[str, Extrinsics] | None = None,
        codecs: Mapping[StreamKind, str] | None = None,
        keyframe: Callable[[StreamKind], object] = lambda kind: None,
    ) -> tuple[dict[StreamKind, StreamTopics | VideoTopics], DeviceGeometry | None]:
        """Topics for *device*'s streams and, with depth and color (or a place in a rig), its
        point cloud and transforms. A stream whose codec (*codecs*) is video is shown as it is
        sent (``CompressedVideo``); *keyframe(kind)* asks that stream for a keyframe."""
        self.remove_device(device)
        ctx = self.server.context
        streams: dict[StreamKind, StreamTopics | VideoTopics] = {}
        for k in kinds:
            codec = (codecs or {}).get(k, "")
            if is_video(codec):
                streams[k] = VideoTopics(ctx, device, k, codec, calibration, partial(keyframe, k))
            else:
                streams[k] = StreamTopics(ctx, device, k, calibration)
        geometry = None
        if (StreamKind.depth in kinds and StreamKind.color in kinds) or placed is not None:
            geometry = DeviceGeometry(
                ctx,
                device,
                self.server.tf,
                calibration,
                table,
                decimate=self.server.options.decimate,
                placed=placed,
                fresh=self.server.listener.tf_fresh,
            )
        with self._lock:
            self._streams[device] = streams
            if geometry is not None:
                self._geometry[device] = geometry
        return streams, geometry

    def stream(self, device: str, kind: StreamKind) -> StreamTopics | VideoTopics | None:
        with self._lock:
            return self._streams.get(device, {}).get(kind)

    def geometry(self, device: str) -> DeviceGeometry | None:
        with self._lock:
            return self._geometry.get(device)

    @property
    def devices(self) -> list[str]:
        with self._lock:
            return list(self._streams)

    def remove_device(self, device: str) -> None:
        with self._lock:
            streams = self._streams.pop(device, {})
            geometry = self._geometry.pop(device, None)
        for s in streams.values():
            s.close()
        if geometry is not None:
            geometry.close()

    def stats(self) -> dict[str, Any]:
        """The server's figures, and per topic group what was sent, failed to convert, and was
        replaced in its slot before conversion (newest wins)."""
        with self._lock:
            streams = {d: dict(s) for d, s in self._streams.items()}
            geometry = dict(self._geometry)
        topics = {
            f"{d}/{k.value}": s.counts() for d, per in streams.items() for k, s in per.items()
        }
        topics.update({f"{d}/points": g.counts() for d, g in geometry.items()})
        return {**self.server.stats(), "topics": topics}

    def close(self) -> None:
        for device in self.devices:
            self.remove_device(device)
        self.server.close()


class FoxgloveOutlet:
    """``serve --foxglove``: the server's devices as Foxglove topics on a WebSocket server."""

    name = "foxglove"

    def __init__(self, options: FoxgloveOptions | None = None) -> None:
        self.options = options or FoxgloveOptions()
        self.options.bind()  # a malformed address is refused here
        self.publishing: FoxglovePublishing | None = None
        """The running server's devices (None while the server is stopped)."""
        self._host: OutletHost | None = None

    def attach(self, host: OutletHost) -> None:
        self.options.check(host.secure is not None)
        self._host = host

    def start(self) -> None:
        assert self._host is not None
        self.publishing = FoxglovePublishing(FoxgloveServer(self.options, self._host.name))
        log.info("Foxglove: open connection %s", self.publishing.server.url)

    def stop(self) -> None:
        publishing, self.publishing = self.publishing, None
        if publishing is not None:
            publishing.close()

    def device_added(self, device: DevicePort) -> None:
        if self.publishing is None:
            return
        streams, geometry = self.publishing.add_device(
            device.id,
            list(device.streams),
            device.calibration,
            device.calibration_table,
            codecs=device.codecs,
            keyframe=device.request_keyframe,
        )
        tap_device(
            device,
            {kind: (topics.submit, topics.wanted) for kind, topics in streams.items()},
            (geometry.submit, geometry.wanted) if geometry is not None else None,
        )

    def device_removed(self, device_id: str) -> None:
        if self.publishing is not None:
            self.publishing.remove_device(device_id)

    def endpoints(self) -> dict[str, str]:
        return {"foxglove": self.publishing.server.url} if self.publishing is not None else {}

    def stats(self) -> dict[str, Any] | None:
        return self.publishing.stats() if self.publishing is not None else None
