"""Receiving rgbdcast streams from Zenoh: the same frames as over ZeroMQ, from anywhere.

How this works: :meth:`ZenohClient.subscribe` declares a Zenoh subscriber on a key expression
(wildcards welcome: ``rgbdcast/site-a/**/depth``). Zenoh calls us on its own thread with each
sample; the sample's attachment is the rgbdcast frame header, checked there and queued, with its
payload, in a small newest-wins queue; decoding waits for whoever takes the frame, exactly as
with :class:`~rgbdcast.client.Client`. Presence (which devices are up) comes from liveliness
tokens, descriptions and calibration from each device's ``@meta`` queryable.

>>> # with ZenohClient(connect=["tcp/10.0.0.5:7447"]) as zc:
>>> #     for frame in zc.subscribe("rgbdcast/**/depth"):
>>> #         print(frame.device_id, frame.array.mean())
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

from ._clientbase import BlockingSubscription
from ._clientvideo import VideoState, decode_video
from .codecs.video import is_video
from .devices.base import require
from .errors import ProtocolError, UsageError
from .frames import StreamKind
from .geometry.calibration import Calibration
from .outlets.zenoh import ZenohLink, ZenohOptions
from .protocol.envelope import parse_encoded
from .protocol.session import StreamStats
from .protocol.zkeys import PREFIX, meta_key, parse_stream_key

__all__ = ["ZenohClient", "ZenohSubscription"]

log = logging.getLogger("rgbdcast.zenoh")


class ZenohSubscription(BlockingSubscription):
    """Frames of every stream matching a key expression. Iterate, or :meth:`get`."""

    def __init__(self, keyexpr: str, queue_size: int, decode: bool) -> None:
        super().__init__("*", StreamKind.depth, queue_size, strict=False, decode=decode)
        self.keyexpr = keyexpr
        self._subscriber: Any = None
        self.per_key: dict[str, StreamStats] = {}
        """Statistics per stream key (a wildcard subscription spans several streams)."""
        self.videos: dict[str, VideoState] = {}
        """Per video stream key: its decoder (``.decoder.gaps``, ...) and keyframe requests."""
        self._ask: Callable[[str], None] = lambda key: None

    def _on_sample(self, sample: Any) -> None:
        """On a Zenoh thread: check the header, count, queue (no decoding here)."""
        attachment = sample.attachment
        if attachment is None:
            self._bad(ProtocolError(f"sample on {sample.key_expr} has no frame header"))
            return
        try:
            header = attachment.to_bytes()
            payload = sample.payload.to_bytes()
            encoded = parse_encoded([header, payload])
        except ProtocolError as exc:
            self._bad(exc)
            return
        key = str(sample.key_expr)
        stats = self.per_key.get(key)
        if stats is None:
            stats = self.per_key[key] = StreamStats()
        now = time.time_ns()
        stats.record(encoded.header, len(header) + len(payload), now)
        self.stats.record(encoded.header, len(header) + len(payload), now)
        if self.decode and is_video(encoded.header.codec):  # in order, here, as Client does
            state = self.videos.setdefault(key, VideoState())
            frame = decode_video(state, encoded, self._bad, partial(self._ask, key))
            if frame is not None:
                self._push(frame)
            return
        self._push(encoded)

    def _what(self) -> str:
        return f"frame on {self.keyexpr}"

    def close(self) -> None:
        self._mark_closed()
        if self._subscriber is not None:
            with contextlib.suppress(Exception):  # the session may be closed already
                self._subscriber.undeclare()
            self._subscriber = None


class ZenohClient:
    """A Zenoh session for receiving rgbdcast streams. By default a client that connects to
    the routers or peers given (a router from ``rgbdcast router``, or a server's ``--zenoh``
    listen endpoint); multicast scouting is off unless asked for."""

    def __init__(
        self,
        connect: Sequence[str] = (),
        listen: Sequence[str] = (),
        *,
        mode: str = "client",
        multicast: bool = False,
        tls: dict[str, str] | None = None,
    ) -> None:
        if mode == "client" and not connect and not multicast:
            raise UsageError("a Zenoh client needs --connect ENDPOINT (or multicast scouting)")
        self._link = ZenohLink(
            ZenohOptions(
                mode=mode, connect=connect, listen=listen, multicast=multicast, tls=dict(tls or {})
            )
        )
        self._subs: list[ZenohSubscription] = []

    @property
    def session(self) -> Any:
        return self._link.session

    def subscribe(
        self, keyexpr: str = f"{PREFIX}/**", *, queue_size: int = 2, decode: bool = True
    ) -> ZenohSubscription:
        """Frames of every stream matching *keyexpr* (e.g. ``rgbdcast/lab/*/depth``)."""
        zenoh = require("zenoh", "zenoh")
        try:
            zenoh.KeyExpr(keyexpr)
        except Exception as exc:
            raise UsageError(f"bad key expression {keyexpr!r}: {exc}") from None
        sub = ZenohSubscription(keyexpr, queue_size, decode)
        sub._ask = self._ask_keyframe
        sub._subscriber = self.session.declare_subscriber(keyexpr, sub._on_sample)
        self._subs.append(sub)
        return sub

    def _ask_keyframe(self, key: str) -> None:
        """Ask the server of video stream *key* for a keyframe (its device's ``@meta``
        queryable, ``keyframe/<stream>``); the reply is not waited for."""
        try:
            server, device, stream = parse_stream_key(key)
            self.session.get(meta_key(server, device, f"keyframe/{stream}"), lambda reply: None)
        except Exception as exc:  # a closing session: the next gap asks again
            log.debug("keyframe request on %s failed: %s", key, exc)

    def devices(self, keyexpr: str = f"{PREFIX}/**", timeout: float = 2.0) -> list[str]:
        """Keys (``rgbdcast/<server>/<device>``) of the devices present now."""
        replies = self.session.liveliness().get(keyexpr, timeout=timeout)
        return sorted(str(r.ok.key_expr) for r in replies if r.ok is not None)

    def meta(self, server: str, device: str, what: str = "info", timeout: float = 2.0) -> Any:
        """A device's description (``info``) or a stream's intrinsics (``calibration/depth``),
        answered by the device's server; ``None`` if nobody answers in time."""
        for reply in self.session.get(meta_key(server, device, what), timeout=timeout):
            if reply.ok is not None:
                return json.loads(reply.ok.payload.to_bytes())
        return None

    def calibration(self, server: str, device: str, timeout: float = 2.0) -> Calibration:
        """The device's calibration (``@meta/calibration``), validated; :class:`UsageError`
        if it has none or nobody answers, :class:`ProtocolError` if it is not a calibration."""
        raw = self.meta(server, device, "calibration", timeout)
        if raw is None:
            raise UsageError(f"{server}/{device} answered no calibration (it has none, or is gone)")
        try:
            return Calibration.from_dict(raw)
        except UsageError as exc:
            raise ProtocolError(f"{server}/{device} sent an invalid calibration: {exc}") from None

    def close(self) -> None:
        for sub in self._subs:
            sub.close()
        self._subs = []
        self._link.close()

    def __enter__(self) -> ZenohClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
