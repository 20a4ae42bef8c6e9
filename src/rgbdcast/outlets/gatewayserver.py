"""The plain-TCP gateway: the newest frame of any stream, for clients without ZeroMQ.

How this works: devices hand every frame to :meth:`TcpGateway.submit` (on their threads; it only
stores the newest frame per device stream and wakes waiting connections). An asyncio loop on the
gateway's own thread serves connections: each connection feeds its bytes to a
:class:`~rgbdcast.protocol.gateway.CommandParser` and answers one command at a time, so it never
holds more than one reply; a slow or silent client only stalls its own task. Camera2TCP services
answer with raw bytes (BGR rows, big-endian depth, a JSON line of bodies); the framed mode
(``LIST``, ``GET``) answers with a length-prefixed rgbdcast frame header and the payload.
Conversions and encodings are cached per frame, so many clients cost one conversion.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import struct
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import codecs
from ..codecs.body import bodies_to_json
from ..frames import MAX_BODIES, Frame, StreamKind
from ..net.counters import Counters
from ..net.loopthread import start_loop_thread
from ..protocol.envelope import build_header
from ..protocol.gateway import SERVICES, Command, CommandParser

__all__ = ["GatewayStats", "TcpGateway"]

log = logging.getLogger(__name__)

INVALID = b"Invalid request"
UNAVAILABLE = b"no service available"
BUSY = b"Server busy: too many clients\n"
QUIET_S = 0.03
"""A command that may be the start of a longer one is taken after this quiet period."""
PARTIAL_S = 1.0
"""An unfinished command is refused after this quiet period."""


@dataclass
class GatewayStats(Counters):
    connections: int = 0
    active: int = 0
    refused: int = 0
    requests: int = 0
    invalid: int = 0
    timeouts: int = 0
    bytes_sent: int = 0


class TcpGateway:
    """Serve the newest frames over plain TCP. ``devices()`` returns ``{device_id: streams}``
    where streams maps a :class:`StreamKind` to its announced ``StreamInfo``; ``services``
    pins Camera2TCP services to device ids (default: the first device with the stream)."""

    def __init__(
        self,
        host: str,
        port: int,
        devices: Callable[[], dict[str, dict[StreamKind, Any]]],
        *,
        services: dict[str, str] | None = None,
        max_clients: int = 32,
        idle_timeout: float = 60.0,
        send_timeout: float = 10.0,
    ) -> None:
        self.host, self.port = host, port
        self._devices = devices
        self._services = dict(services or {})
        self.max_clients = max_clients
        self.idle_timeout = idle_timeout
        self.send_timeout = send_timeout
        self.stats = GatewayStats()
        self._latest: dict[tuple[str, StreamKind], Frame] = {}
        self._lock = threading.Lock()
        self._cache: OrderedDict[tuple[Any, ...], bytes | memoryview] = OrderedDict()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._events: dict[tuple[str, StreamKind], asyncio.Event] = {}
        self._thread: threading.Thread | None = None
        self._server: asyncio.base_events.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> None:
        """Bind and serve; raises ``OSError`` if the port cannot be bound."""

        def bind() -> Awaitable[asyncio.base_events.Server]:
            return asyncio.start_server(self._serve, self.host, self.port, limit=1 << 16)

        self._loop, self._thread, server = start_loop_thread("rgbdcast-gateway", bind)
        self._server = server
        self.port = server.sockets[0].getsockname()[1]

    def stop(self) -> None:
        loop, self._loop = self._loop, None
        if loop is None or self._thread is None:
            return

        async def shutdown() -> None:
            assert self._server is not None
            self._server.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await self._server.wait_closed()

        asyncio.run_coroutine_threadsafe(shutdown(), loop).result(timeout=2)
        loop.call_soon_threadsafe(loop.stop)
        self._thread.join(2)
        loop.close()

    # -- frames in ------------------------------------------------------------------------
    def submit(self, frame: Frame) -> None:
        """Called on a device thread: keep the newest frame, wake whoever waits for one."""
        key = (frame.device_id, frame.kind)
        with self._lock:
            self._latest[key] = frame
        loop = self._loop
        if loop is not None and key in self._events:
            loop.call_soon_threadsafe(self._wake, key)

    def _wake(self, key: tuple[str, StreamKind]) -> None:
        event = self._events.pop(key, None)
        if event is not None:
            event.set()

    async def _newest(
        self, key: tuple[str, StreamKind], after: int | None, wait: float
    ) -> Frame | None:
        """The newest frame of *key*, waiting up to *wait* s for one newer than seq *after*."""
        deadline = time.monotonic() + wait
        while True:
            with self._lock:
                frame = self._latest.get(key)
            if frame is not None and (after is None or frame.seq != after):
                return frame
            left = deadline - time.monotonic()
            if left <= 0:
                return frame
            event = self._events.setdefault(key, asyncio.Event())
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(event.wait(), left)

    def _device_for(self, service: str) -> str | None:
        stream = StreamKind(SERVICES[service].stream)
        devices = self._devices()
        pinned = self._services.get(service)
        if pinned is not None:
            return pinned if pinned in devices and stream in devices[pinned] else None
        return next((d for d, streams in devices.items() if stream in streams), None)

    def _cached(
        self, key: tuple[Any, ...], make: Callable[[], bytes | memoryview]
    ) -> bytes | memoryview:
        with self._lock:
            hit = self._cache.get(key)
        if hit is not None:
            return hit
        value = make()
        with self._lock:
            self._cache[key] = value
            while len(self._cache) > 32:
                self._cache.popitem(last=False)
        return value

    # -- replies --------------------------------------------------------------------------
    def _raw_reply(self, frame: Frame) -> bytes | memoryview:
        key = ("raw", frame.device_id, frame.kind, frame.seq, frame.host_time_ns)
        if frame.kind is StreamKind.color:
            return self._cached(
                key, lambda: np.ascontiguousarray(frame.array[..., :3]).data.cast("B")
            )
        if frame.kind is StreamKind.body:
            line = (
                json.dumps(
                    {
                        "seq": frame.seq,
                        "t_host": frame.host_time_ns,
                        "bodies": bodies_to_json(frame.bodies),
                    }
                )
                + "\n"
            )
            return self._cached(key, lambda: line.encode())
        return self._cached(key, lambda: frame.array.astype(">u2").tobytes())

    async def _handshake(self, service: str) -> bytes:
        dev = self._device_for(service)
        if dev is None:
            return UNAVAILABLE
        kind = StreamKind(SERVICES[service].stream)
        if kind is StreamKind.body:
            return str(MAX_BODIES).encode()
        frame = await self._newest((dev, kind), None, 1.0)
        if frame is not None:
            h, w = frame.shape[:2]
        else:
            info = self._devices()[dev][kind]
            h, w = info.height, info.width
        if kind is StreamKind.depth:
            return f"{w},{h},1".encode()  # width first, as Camera2TCP answered
        return f"{h},{w},3".encode()

    def _framed(
        self, header: dict[str, Any] | bytes, payload: bytes | memoryview = b""
    ) -> list[Any]:
        head = header if isinstance(header, bytes) else json.dumps(header).encode()
        return [struct.pack(">I", len(head)), head, payload]

    async def _get(self, args: tuple[str, ...], last: dict[Any, int]) -> list[Any]:
        device, stream = args[0], args[1]
        codec_name = args[2] if len(args) > 2 else None
        try:
            kind = StreamKind(stream)
            codec = codecs.get(codec_name or ("body" if kind is StreamKind.body else "raw"), kind)
        except ValueError as exc:
            return self._framed({"error": str(exc)})
        if getattr(codec, "video", False):  # one frame on request cannot be a video chain
            return self._framed(
                {
                    "error": f"{codec.info.name} is not offered here: video needs every frame in "
                    "order; ask for jpeg (or use the ZeroMQ stream)"
                }
            )
        if kind not in self._devices().get(device, {}):
            return self._framed({"error": f"no {stream} stream on device {device!r}"})
        key = (device, kind)
        frame = await self._newest(key, last.get(key), 0.1)
        if frame is None:
            return self._framed({"error": f"no {stream} frame from {device!r} yet"})
        last[key] = frame.seq
        source = frame.encoded
        if source is not None and codecs.accepts(codec, source):
            # the source's own JPEG, as the ZeroMQ path sends it
            payload: bytes | memoryview = source.payload
            shape = source.shape
        else:
            payload = self._cached(
                ("enc", device, kind, frame.seq, frame.host_time_ns, codec.info.name),
                lambda: _byte_view(codec.encode(frame.data, {})),
            )
            shape = codecs.output_shape(codec, frame.shape)
        header = build_header(frame, codec.info.name, len(payload), time.time_ns(), shape)
        return self._framed(header[5:], payload)

    def _list(self) -> list[Any]:
        devices = {
            dev: {k.value: v.to_dict() for k, v in streams.items()}
            for dev, streams in self._devices().items()
        }
        services = {s: self._device_for(s) for s in SERVICES}
        return self._framed({"devices": devices, "services": services})

    async def _answer(self, cmd: Command, last: dict[Any, int]) -> list[Any]:
        self.stats.requests += 1
        if cmd.kind == "invalid":
            self.stats.invalid += 1
            return [INVALID]
        if cmd.kind == "handshake":
            return [await self._handshake(cmd.service)]
        if cmd.kind == "list":
            return self._list()
        if cmd.kind == "get":
            return await self._get(cmd.args, last)
        dev = self._device_for(cmd.service)
        if dev is None:
            return [UNAVAILABLE]
        key = (dev, StreamKind(SERVICES[cmd.service].stream))
        frame = await self._newest(key, last.get(key), 0.1)
        if frame is None:
            return [UNAVAILABLE]
        last[key] = frame.seq
        return [self._raw_reply(frame)]

    # -- connections ----------------------------------------------------------------------
    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.stats.connections += 1
        if self.stats.active >= self.max_clients:
            self.stats.refused += 1
            writer.write(BUSY)
            await _close(writer)
            return
        self.stats.active += 1
        self._tasks.add(task)
        parser = CommandParser()
        last: dict[Any, int] = {}
        try:
            while True:
                if parser.ambiguous:
                    wait = QUIET_S
                elif parser.pending:
                    wait = PARTIAL_S
                else:
                    wait = self.idle_timeout
                try:
                    data = await asyncio.wait_for(reader.read(4096), wait)
                except asyncio.TimeoutError:
                    if parser.ambiguous:
                        commands = parser.flush()
                    elif parser.pending:
                        commands = parser.expire()
                    else:
                        self.stats.timeouts += 1
                        return
                else:
                    if not data:
                        return
                    commands = parser.feed(data)
                for cmd in commands:
                    for part in await self._answer(cmd, last):
                        writer.write(part)
                        self.stats.bytes_sent += len(part)
                    await asyncio.wait_for(writer.drain(), self.send_timeout)
        except (asyncio.TimeoutError, ConnectionError) as exc:
            log.debug("gateway client dropped: %r", exc)
        except asyncio.CancelledError:
            pass  # the gateway is stopping: end this connection quietly
        finally:
            self.stats.active -= 1
            self._tasks.discard(task)
            await _close(writer)


def _byte_view(buf: Any) -> memoryview:
    """A flat byte view of an encoded payload, without copying it."""
    if isinstance(buf, np.ndarray):
        return np.ascontiguousarray(buf).data.cast("B")
    return memoryview(buf).cast("B")


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(asyncio.TimeoutError, ConnectionError, OSError):
        await asyncio.wait_for(writer.wait_closed(), 1.0)
