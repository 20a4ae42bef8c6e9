"""The web viewer: a page and a WebSocket that show every device and stream live in a browser.

How this works: producers call :meth:`WebViewer.submit` from any thread with the newest frame of a
stream (the server does it from its device and publisher threads; ``rgbdcast view`` from its
client). Submitting stores a reference and, while someone watches, wakes the viewer's asyncio
loop, which runs on its own thread and serves both HTTP (the page, from the package's ``webui``
folder) and the WebSocket at ``/ws``. Every browser gets one sender task per stream that sends
the newest frame, then waits for the page's ack before sending the next one: one frame in flight
per stream and browser, however slow the browser or its link. What a frame becomes for browsers
(a JPEG, deflated depth, body JSON; see :mod:`rgbdcast.protocol.viewer`) is rendered once, on a
small worker pool, and shared by all browsers; nothing is rendered while nobody watches.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Protocol
from urllib.parse import parse_qs

from websockets.asyncio.server import Server as WsServer
from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from .._version import __version__
from ..errors import ProtocolError
from ..frames import Frame
from ..net.counters import Counters
from ..net.loopthread import start_loop_thread
from ..protocol.envelope import EncodedFrame
from ..protocol.viewer import (
    DEFAULT_JPEG_QUALITY,
    MAX_CLIENT_MESSAGE,
    frame_message,
    hello_message,
    is_plain_jpeg,
    parse_client_message,
    text_message,
)
from .webvideo import ACK_TIMEOUT_S, VideoSending

__all__ = ["ViewerBackend", "ViewerStats", "WebViewer"]

log = logging.getLogger(__name__)

REFRESH_S = 0.5
STATS_S = 1.0

_ASSETS = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/index.html": ("index.html", "text/html; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/app.css": ("app.css", "text/css; charset=utf-8"),
    "/view3d.js": ("view3d.js", "text/javascript; charset=utf-8"),
    **{
        f"/vendor/three/{name}": (f"vendor/three/{name}", "text/javascript; charset=utf-8")
        for name in ("three.module.js", "three.core.js", "OrbitControls.js")
    },
}


class ViewerBackend(Protocol):
    """What the viewer shows: the server itself, or the servers ``rgbdcast view`` watches."""

    name: str
    mode: str

    def devices(self) -> list[dict[str, Any]]:
        """``[{"id", "name", "state", "streams": {kind: {...}}}]``; state ``live`` or a reason."""

    def stats(self) -> dict[str, dict[str, Any]]:
        """Counters per ``device/stream`` (at least ``dropped``)."""

    def sources(self) -> list[dict[str, Any]]:
        """Servers the user may pick (``rgbdcast view``): ``[{"id", "name", "selected"}]``."""

    def select(self, source: str, on: bool) -> None:
        """Start or stop watching a source (may block; called on a worker thread)."""


@dataclass
class ViewerStats(Counters):
    viewers: int = 0
    connections: int = 0
    refused: int = 0
    frames_sent: int = 0
    bytes_sent: int = 0
    renders: int = 0
    render_errors: int = 0
    bad_messages: int = 0


@dataclass(slots=True)
class _Item:
    ident: tuple[Any, ...]
    seq: int
    frame: Frame | None
    jpeg: Any = None
    encoded: EncodedFrame | None = None
    device: str | None = None
    make: Callable[[float], bytes] | None = None


@dataclass(eq=False)
class _Viewer:
    ws: ServerConnection
    video: set[str] = field(default_factory=set)
    """The video codecs this browser decodes itself (WebCodecs), as it said."""
    acks: dict[str, asyncio.Event] = field(default_factory=dict)
    senders: dict[str, asyncio.Task[None]] = field(default_factory=dict)
    sent: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    skipped: dict[str, int] = field(default_factory=lambda: defaultdict(int))


class WebViewer(VideoSending):
    """Serve the viewer page on ``http://host:port/`` (0 picks a free port)."""

    def __init__(
        self,
        host: str,
        port: int,
        backend: ViewerBackend,
        *,
        max_viewers: int = 16,
        jpeg_quality: int = DEFAULT_JPEG_QUALITY,
        token: str | None = None,
    ) -> None:
        self.host, self.port = host, port
        self.token = token
        """When set, every request must carry ``?token=<token>`` (secure servers)."""
        self.backend = backend
        self.max_viewers = max_viewers
        self.jpeg_quality = jpeg_quality
        self.stats = ViewerStats()
        self._latest: dict[str, _Item] = {}
        self._units = {}
        self._events: dict[str, asyncio.Event] = {}
        self._renders: dict[str, tuple[tuple[Any, ...], asyncio.Future[bytes]]] = {}
        self._viewers: set[_Viewer] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: WsServer | None = None
        self._pool: ThreadPoolExecutor | None = None

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> None:
        """Bind and serve; raises ``OSError`` if the port cannot be bound."""
        self._loop, self._thread, server = start_loop_thread("rgbdcast-web", self._bind)
        self._server = server
        self.port = next(iter(server.sockets)).getsockname()[1]
        self._pool = ThreadPoolExecutor(2, "rgbdcast-web-render")

    async def _bind(self) -> WsServer:
        return await serve(
            self._session,
            self.host,
            self.port,
            process_request=self._http,
            compression=None,  # JPEG and deflated depth do not compress further
            max_size=MAX_CLIENT_MESSAGE,
            max_queue=4,
            server_header=f"rgbdcast/{__version__}",
            ping_interval=10,
            ping_timeout=10,
        )

    def stop(self) -> None:
        loop, self._loop = self._loop, None
        if loop is None or self._thread is None:
            return

        async def shutdown() -> None:
            assert self._server is not None
            self._server.close()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)
            others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in others:  # half-open handshakes, HTTP requests in progress
                task.cancel()
            await asyncio.gather(*others, return_exceptions=True)
            await loop.shutdown_default_executor()

        fut = asyncio.run_coroutine_threadsafe(shutdown(), loop)
        with contextlib.suppress(Exception):
            fut.result(3.0)
        loop.call_soon_threadsafe(loop.stop)
        self._thread.join(3.0)
        loop.close()
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)

    @property
    def url(self) -> str:
        from ..net.addresses import advertise_host

        host = advertise_host(self.host)
        query = f"?token={self.token}" if self.token else ""
        return f"http://{f'[{host}]' if ':' in host else host}:{self.port}/{query}"

    @property
    def watching(self) -> bool:
        """True while at least one browser is connected."""
        return bool(self._viewers)

    # -- producers (any thread) -----------------------------------------------------------
    def submit(self, frame: Frame, *, jpeg: Any = None, device: str | None = None) -> None:
        """Offer the newest frame of a stream (any thread). For color, *jpeg* may be the
        stream's own JPEG, which browsers then get as it is. *device* replaces its device id."""
        key = f"{device or frame.device_id}/{frame.kind.value}"
        item = _Item((frame.seq, frame.host_time_ns, id(frame)), frame.seq, frame, jpeg)
        item.device = device
        self._store(key, item)

    def submit_encoded(self, encoded: EncodedFrame, device: str | None = None) -> None:
        """Offer a frame as received from a server; it is decoded only if a browser wants it.
        *device* replaces its device id."""
        h = encoded.header
        item = _Item((h.seq, h.host_time_ns, id(encoded)), h.seq, None, encoded=encoded)
        item.device = device
        self._store(f"{device or h.device_id}/{h.stream.value}", item)

    def submit_made(self, key: str, seq: int, make: Callable[[float], bytes]) -> None:
        """Offer a message the viewer makes only when a browser wants it (``make(send_ms)``
        runs on the render pool): the 3-D view's clouds (``<device>/points``)."""
        self._store(key, _Item((seq, id(make)), seq, None, make=make))

    def _store(self, key: str, item: _Item) -> None:
        self._latest[key] = item
        loop = self._loop
        if loop is not None and key in self._events:  # wake only a sender that waits
            with contextlib.suppress(RuntimeError):  # loop closing
                loop.call_soon_threadsafe(self._wake, key)

    def forget(self, device_id: str) -> None:
        """Drop the frames held for a device (it went away)."""
        for key in [k for k in self._latest if k.rpartition("/")[0] == device_id]:
            self._latest.pop(key, None)

    # -- loop side ------------------------------------------------------------------------
    def _wake(self, key: str) -> None:
        ev = self._events.pop(key, None)
        if ev is not None:
            ev.set()

    async def _newer(self, key: str, last: tuple[Any, ...] | None) -> _Item:
        while True:
            item = self._latest.get(key)
            if item is not None and item.ident != last:
                return item
            ev = self._events.get(key)
            if ev is None:
                ev = self._events[key] = asyncio.Event()
                item = self._latest.get(key)  # stored before the event existed: no wake came
                if item is not None and item.ident != last:
                    return item
            await ev.wait()

    async def _render(self, key: str, item: _Item) -> bytes:
        cached = self._renders.get(key)
        if cached is not None and cached[0] == item.ident:
            return await asyncio.shield(cached[1])
        loop = asyncio.get_running_loop()
        assert self._pool is not None
        fut = loop.run_in_executor(self._pool, self._render_sync, item)
        self._renders[key] = (item.ident, fut)
        self.stats.renders += 1
        return await asyncio.shield(fut)

    def _render_sync(self, item: _Item) -> bytes:
        if item.make is not None:
            return item.make(time.time_ns() / 1e6)
        frame, jpeg, meta = item.frame, item.jpeg, None
        if item.encoded is not None:
            h = item.encoded.header
            if h.codec == "jpeg" and is_plain_jpeg(item.encoded.payload):
                jpeg = item.encoded.payload
                meta = {
                    "device": h.device_id,
                    "stream": h.stream.value,
                    "seq": h.seq,
                    "t_host_ns": h.host_time_ns,
                    "height": h.shape[0],
                    "width": h.shape[1],
                    "units": h.units,
                }
            else:
                frame = item.encoded.decode()
        return frame_message(
            frame,
            jpeg=jpeg,
            meta=meta,
            jpeg_quality=self.jpeg_quality,
            send_time_ms=time.time_ns() / 1e6,
            device=item.device,
        )

    async def _http(self, conn: ServerConnection, request: Request) -> Response | None:
        path, _, query = request.path.partition("?")
        if self.token is not None:
            given = parse_qs(query).get("token", [""])[0]
            if not hmac.compare_digest(given.encode(), self.token.encode()):
                self.stats.refused += 1
                return _response(403, "Forbidden", b"this viewer needs its token\n", "text/plain")
        if path == "/ws":
            return None  # the WebSocket handshake goes on
        if path == "/api/devices":
            body = text_message("devices", devices=self.backend.devices()).encode()
            return _response(200, "OK", body, "application/json")
        asset = _ASSETS.get(path)
        if asset is None:
            return _response(404, "Not Found", b"not found\n", "text/plain")
        body = resources.files("rgbdcast").joinpath("webui", *asset[0].split("/")).read_bytes()
        return _response(200, "OK", body, asset[1])

    async def _session(self, ws: ServerConnection) -> None:
        self.stats.connections += 1
        if len(self._viewers) >= self.max_viewers:
            self.stats.refused += 1
            await ws.close(1013, f"at most {self.max_viewers} viewers; try again later")
            return
        viewer = _Viewer(ws)
        self._viewers.add(viewer)
        self.stats.viewers = len(self._viewers)
        manager = asyncio.create_task(self._manage(viewer))
        try:
            await ws.send(hello_message(self.backend.name, __version__, self.backend.mode))
            async for raw in ws:
                await self._on_message(viewer, raw)
        except ConnectionClosed:
            pass
        finally:
            manager.cancel()
            for task in viewer.senders.values():
                task.cancel()
            await asyncio.gather(manager, *viewer.senders.values(), return_exceptions=True)
            self._viewers.discard(viewer)
            self.stats.viewers = len(self._viewers)

    async def _on_message(self, viewer: _Viewer, raw: str | bytes) -> None:
        try:
            msg = parse_client_message(raw)
        except ProtocolError as exc:
            self.stats.bad_messages += 1
            await viewer.ws.send(text_message("error", reason=str(exc)))
            return
        if msg["type"] == "ack":
            ack = viewer.acks.get(msg["key"])
            if ack is not None:
                ack.set()
        elif msg["type"] == "video":  # its senders of video streams switch at their next frame
            viewer.video = {c for c in msg["codecs"] if c == "h264"}
        elif msg["type"] == "select":
            await asyncio.to_thread(self.backend.select, msg["source"], msg.get("on", True))

    async def _manage(self, viewer: _Viewer) -> None:
        """Keep a browser's device list and stats current and a sender per live stream."""
        shown: list[dict[str, Any]] | None = None
        next_stats = 0.0
        while True:
            devices = await asyncio.to_thread(self.backend.devices)
            if devices != shown:
                shown = devices
                await viewer.ws.send(text_message("devices", devices=devices))
            live = {
                f"{d['id']}/{kind}"
                for d in devices
                if d.get("state") == "live"
                for kind in d["streams"]
            }
            for key in live - viewer.senders.keys():
                viewer.senders[key] = asyncio.create_task(self._send_stream(viewer, key))
            for key in viewer.senders.keys() - live:
                viewer.senders.pop(key).cancel()
            now = time.monotonic()
            if now >= next_stats:
                next_stats = now + STATS_S
                await viewer.ws.send(self._stats_message(viewer))
            await asyncio.sleep(REFRESH_S)

    def _stats_message(self, viewer: _Viewer) -> str:
        return text_message(
            "stats",
            streams=self.backend.stats(),
            viewer={k: {"sent": viewer.sent[k], "skipped": viewer.skipped[k]} for k in viewer.sent},
            sources=self.backend.sources(),
            server=self.stats.to_dict(),
        )

    async def _send_stream(self, viewer: _Viewer, key: str) -> None:
        ack = viewer.acks[key] = asyncio.Event()
        ack.set()
        last: _Item | None = None
        while True:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(ack.wait(), ACK_TIMEOUT_S)
            item = await self._newer(key, last.ident if last else None)
            if "h264" in viewer.video and key in self._units:  # it decodes this stream itself
                await self._send_video(viewer, key)
                return
            if last is not None and item.seq > last.seq + 1:
                viewer.skipped[key] += item.seq - last.seq - 1
            try:
                msg = await self._render(key, item)
            except Exception as exc:  # a frame the page cannot be shown: count it, go on
                self.stats.render_errors += 1
                log.warning("cannot render %s for the viewer: %s", key, exc)
                last = item
                continue
            if not await self._deliver(viewer, key, ack, msg):
                return
            last = item


def _response(status: int, reason: str, body: bytes, ctype: str) -> Response:
    headers = Headers(
        [
            ("Content-Type", ctype),
            ("Content-Length", str(len(body))),
            ("Cache-Control", "no-store"),
            ("X-Content-Type-Options", "nosniff"),
        ]
    )
    return Response(status, reason, headers, body)
