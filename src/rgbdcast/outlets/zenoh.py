"""Publishing rgbdcast streams into Zenoh: sessions, per-stream senders, device presence, and
the server's Zenoh outlet.

How this works: one Zenoh session per process (:class:`ZenohLink`). Each device stream gets a
:class:`StreamSender`: the producer (a publisher tap on the server, or the bridge's client
thread) drops ``(header, payload)`` into a latest-frame slot and never waits; the sender's own
thread takes the newest and ``put()``s it, already encoded, with the frame header as the
sample's attachment and the codec in its encoding. A ``put`` can wait on a stuck link (tens of
ms for large fragmented frames), so the wait stays on that thread; congestion control is DROP,
so Zenoh drops for a slow peer instead of queueing. Each device has a liveliness token (its
presence; it disappears when the process closes or dies) and a queryable answering its
description and calibration for late joiners.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from ..devices.base import require
from ..errors import UsageError
from ..frames import Frame
from ..net.counters import Counters
from ..net.slot import LatestSlot
from ..protocol.zkeys import ENCODING, meta_key, presence_key, stream_key
from .base import DevicePort, OutletHost

__all__ = [
    "DevicePresence",
    "SenderStats",
    "StreamSender",
    "ZenohLink",
    "ZenohOptions",
    "ZenohOutlet",
    "ZenohPublishing",
    "ZenohSession",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ZenohOptions:
    """Where and how to join Zenoh. With no endpoints a peer listens nowhere and finds nobody:
    give ``connect`` (a router or peer) and/or ``listen``. Multicast scouting is off unless
    asked for. ``tls`` takes Zenoh's TLS settings (``root_ca_certificate``,
    ``listen_certificate``, ``listen_private_key``, ...) for ``tls/`` endpoints."""

    mode: str = "peer"
    connect: Sequence[str] = ()
    listen: Sequence[str] = ()
    multicast: bool = False
    tls: dict[str, str] = field(default_factory=dict)

    def config(self) -> Any:
        zenoh = require("zenoh", "zenoh")
        if self.mode not in ("peer", "client", "router"):
            raise UsageError(f"Zenoh mode must be peer, client or router, not {self.mode!r}")
        conf = zenoh.Config()
        conf.insert_json5("mode", json.dumps(self.mode))
        conf.insert_json5("connect/endpoints", json.dumps(list(self.connect)))
        conf.insert_json5("listen/endpoints", json.dumps(list(self.listen)))
        conf.insert_json5("scouting/multicast/enabled", json.dumps(self.multicast))
        if self.mode != "router":
            # a 6 MB frame is many batches: let a stuck link drop rather than block (issue 8)
            conf.insert_json5("transport/link/tx/queue/size/data", "16")
        for name, value in self.tls.items():
            conf.insert_json5(f"transport/link/tls/{name}", json.dumps(value))
        return conf


class ZenohLink:
    """One Zenoh session; closes everything declared on it."""

    def __init__(self, options: ZenohOptions) -> None:
        zenoh = require("zenoh", "zenoh")
        self.options = options
        try:
            self.session = zenoh.open(options.config())
        except Exception as exc:  # zenoh.ZError: a bad endpoint, a port in use
            raise UsageError(f"cannot open the Zenoh session: {exc}") from exc
        self._closed = False

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.session.close()

    def __enter__(self) -> ZenohLink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class SenderStats(Counters):
    offered: int = 0
    sent: int = 0
    dropped_busy: int = 0
    put_errors: int = 0
    bytes_sent: int = 0


class StreamSender:
    """Publishes one device stream into Zenoh from its own thread, newest frame first."""

    def __init__(self, link: ZenohLink, server: str, device: str, stream: str) -> None:
        zenoh = require("zenoh", "zenoh")
        self.key = stream_key(server, device, stream)
        self._zenoh = zenoh
        self._publisher = link.session.declare_publisher(
            self.key,
            congestion_control=zenoh.CongestionControl.DROP,
            express=True,  # one frame is one message: do not hold it back for batching
        )
        self.slot: LatestSlot[tuple[bytes, Any, str]] = LatestSlot()
        self._stats = SenderStats()
        self._encodings: dict[str, Any] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"rgbdcast-zenoh-{device}-{stream}", daemon=True
        )
        self._thread.start()

    def matched(self) -> bool:
        """True while some subscriber anywhere matches this stream's key."""
        try:
            return bool(self._publisher.matching_status.matching)
        except Exception:  # closed session
            return False

    def submit(self, frame: Frame | None, header: bytes, payload: Any, *, codec: str) -> None:
        """A publisher tap (any thread, never blocks): keep the newest encoded frame. *codec*
        names the payload's codec (the sample's encoding)."""
        self.slot.put((header, payload, codec))

    @property
    def stats(self) -> SenderStats:
        s = self._stats
        s.offered, s.dropped_busy = self.slot.put_count, self.slot.dropped
        return s

    def _run(self) -> None:
        while not self._stop.is_set():
            item = self.slot.take(timeout=0.1)
            if item is None:
                continue
            header, payload, codec = item
            encoding = self._encodings.get(codec)
            if encoding is None:
                encoding = self._encodings[codec] = self._zenoh.Encoding(f"{ENCODING};{codec}")
            try:
                self._publisher.put(
                    bytes(payload) if not isinstance(payload, bytes) else payload,
                    attachment=header,
                    encoding=encoding,
                )
            except Exception as exc:  # closing session, transport gone
                self._stats.put_errors += 1
                log.debug("put on %s failed: %s", self.key, exc)
                continue
            self._stats.sent += 1
            self._stats.bytes_sent += len(header) + memoryview(payload).nbytes

    def close(self) -> None:
        self._stop.set()
        self.slot.close()
        self._thread.join(2.0)
        try:
            self._publisher.undeclare()
        except Exception as exc:  # the session may be closed already
            log.debug("undeclaring %s: %s", self.key, exc)


class DevicePresence:
    """A device's liveliness token and its metadata queryable."""

    def __init__(
        self,
        link: ZenohLink,
        server: str,
        device: str,
        info: Callable[[], dict[str, Any]],
        keyframe: Callable[[str], bool] = lambda stream: False,
    ) -> None:
        self.key = presence_key(server, device)
        self._info = info
        self._keyframe = keyframe
        self._token = link.session.liveliness().declare_token(self.key)
        self._queryable = link.session.declare_queryable(meta_key(server, device), self._answer)

    def _answer(self, query: Any) -> None:
        """On a Zenoh thread: ``@meta/info`` is the device's description, ``@meta/calibration``
        its calibration (docs/protocol.md; ``null`` if it has none), ``@meta/calibration/
        <stream>`` that stream's intrinsics (``null`` if it has none), and ``@meta/keyframe/
        <stream>`` asks a video stream for a keyframe (``{"queued": bool}``)."""
        try:
            key = str(query.key_expr)
            what = key.split("/@meta/", 1)[1] if "/@meta/" in key else ""
            if what.startswith("keyframe/"):
                queued = self._keyframe(what.split("/", 1)[1])
                query.reply(key, json.dumps({"queued": queued}).encode())
                return
            info = self._info()
            replies: list[tuple[str, Any]] = []
            if what in ("info", "**", "*"):
                replies.append(("info", info))
            if what in ("calibration", "**", "*"):
                replies.append(("calibration", info.get("calibration")))
            streams = info.get("streams", {})
            for stream, desc in streams.items():
                sub = f"calibration/{stream}"
                if what in (sub, "calibration/*", "calibration/**", "**"):
                    replies.append((sub, desc.get("intrinsics")))
            base = key.split("/@meta/", 1)[0]
            for name, value in replies:
                query.reply(f"{base}/@meta/{name}", json.dumps(value).encode())
        except Exception as exc:  # a query must never take the server down
            log.warning("answering %s failed: %s", query.key_expr, exc)

    def close(self) -> None:
        for thing in (self._queryable, self._token):
            try:
                thing.undeclare()
            except Exception as exc:
                log.debug("undeclaring %s: %s", self.key, exc)


class ZenohPublishing:
    """The devices of one server (its name is the key's second chunk) published on *link*."""

    def __init__(self, link: ZenohLink, server: str) -> None:
        self.link = link
        self.server = server
        self._devices: dict[str, tuple[DevicePresence, dict[str, StreamSender]]] = {}
        self._lock = threading.Lock()

    def add_device(
        self,
        device: str,
        streams: Sequence[str],
        info: Callable[[], dict[str, Any]],
        keyframe: Callable[[str], bool] = lambda stream: False,
    ) -> dict[str, StreamSender]:
        """Announce *device* and open a sender per stream (replacing an earlier announcement);
        *keyframe(stream)* asks a video stream for a keyframe."""
        self.remove_device(device)
        senders = {s: StreamSender(self.link, self.server, device, s) for s in streams}
        presence = DevicePresence(self.link, self.server, device, info, keyframe)
        with self._lock:
            self._devices[device] = (presence, senders)
        return senders

    def sender(self, device: str, stream: str) -> StreamSender | None:
        with self._lock:
            entry = self._devices.get(device)
        return entry[1].get(stream) if entry else None

    def remove_device(self, device: str) -> None:
        with self._lock:
            entry = self._devices.pop(device, None)
        if entry is not None:
            presence, senders = entry
            presence.close()
            for sender in senders.values():
                sender.close()

    @property
    def devices(self) -> list[str]:
        with self._lock:
            return list(self._devices)

    def stats(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            entries = list(self._devices.values())
        return {s.key: s.stats.to_dict() for _, senders in entries for s in senders.values()}

    def close(self) -> None:
        for device in self.devices:
            self.remove_device(device)


class ZenohSession:
    """One Zenoh session for the outlets of a server that publish over it (``serve --zenoh
    --ros2`` is one Zenoh participant): opened by the first of them to start, closed by the last
    to stop. Without TLS settings a secure server refuses to publish into it unless
    *allow_insecure*."""

    def __init__(self, options: ZenohOptions, *, allow_insecure: bool = False) -> None:
        self.options = options
        self.allow_insecure = allow_insecure
        self._link: ZenohLink | None = None
        self._users = 0
        self._lock = threading.Lock()

    def check(self, host: OutletHost) -> None:
        """Refuse to carry a secure server's streams unencrypted unless allowed."""
        if host.secure is not None and not self.options.tls and not self.allow_insecure:
            raise UsageError(
                "a secure server would publish into Zenoh without encryption: give Zenoh TLS "
                "settings (--zenoh-tls, tls/ endpoints) or allow it (--zenoh-allow-insecure)"
            )

    def acquire(self) -> ZenohLink:
        with self._lock:
            if self._link is None:
                self._link = ZenohLink(self.options)
            self._users += 1
            return self._link

    def release(self) -> None:
        with self._lock:
            self._users -= 1
            link = self._link if self._users <= 0 else None
            if link is not None:
                self._link, self._users = None, 0
        if link is not None:
            link.close()


def session_of(zenoh: ZenohSession | ZenohOptions) -> ZenohSession:
    return zenoh if isinstance(zenoh, ZenohSession) else ZenohSession(zenoh)


class ZenohOutlet:
    """``serve --zenoh``: every stream of the server published into Zenoh, already encoded,
    under ``rgbdcast/<server>/<device>/<stream>``, each device with its presence token and
    ``@meta`` queryable. *zenoh* is where to join (options, or a session shared with
    :class:`~rgbdcast.outlets.ros2.Ros2Outlet`). A stream no Zenoh subscriber matches costs
    nothing; one that only Zenoh wants is encoded for it."""

    name = "zenoh"

    def __init__(self, zenoh: ZenohSession | ZenohOptions) -> None:
        self.session = session_of(zenoh)
        self.publishing: ZenohPublishing | None = None
        """The server's devices in Zenoh (None while the server is stopped)."""
        self._host: OutletHost | None = None

    def attach(self, host: OutletHost) -> None:
        self.session.check(host)
        self._host = host

    def start(self) -> None:
        assert self._host is not None
        self.publishing = ZenohPublishing(self.session.acquire(), self._host.name)

    def stop(self) -> None:
        publishing, self.publishing = self.publishing, None
        if publishing is not None:
            publishing.close()
            self.session.release()

    def device_added(self, device: DevicePort) -> None:
        host, publishing = self._host, self.publishing
        if publishing is None or host is None:
            return
        kinds = [k.value for k in device.streams]
        ports = {k.value: p for k, p in device.streams.items()}

        def keyframe(stream: str) -> bool:
            port = ports.get(stream)
            return port is not None and port.request_keyframe()

        senders = publishing.add_device(
            device.id, kinds, partial(host.device_record, device.id), keyframe
        )
        for kind, port in device.streams.items():
            sender = senders[kind.value]
            port.tap_encoded(partial(sender.submit, codec=port.codec), sender.matched)

    def device_removed(self, device_id: str) -> None:
        if self.publishing is not None:
            self.publishing.remove_device(device_id)

    def endpoints(self) -> dict[str, str]:
        return {}

    def stats(self) -> dict[str, Any] | None:
        return self.publishing.stats() if self.publishing is not None else None
