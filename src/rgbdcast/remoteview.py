"""What ``rgbdcast view`` shows: the web viewer's backends for servers elsewhere (named, or found
on Zeroconf) and for streams in Zenoh.

How this works: a :class:`RemoteBackend` keeps a list of sources (servers given on the command
line are watched at once; discovered ones are listed for the user to pick in the page). For each
watched source it holds one :class:`~rgbdcast.client.Client` that subscribes to every stream of
every device without decoding (``decode=False``, a queue of one); the client's I/O thread hands
each frame, still encoded, to the :class:`~rgbdcast.outlets.webviewer.WebViewer`, which decodes
only the frames a browser is about to get (color JPEG is passed through as the server sent it).
A sync thread reconciles subscriptions with the servers' device lists twice a second. A device
whose server sends a calibration gets the 3-D view: depth and color of one frameset are paired
here and made into a cloud (with that calibration) only when a browser shows it.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from .codecs.video import is_video
from .errors import RgbdcastError, UsageError
from .frames import Frame, StreamKind
from .net.addresses import make_endpoint, parse_endpoint
from .outlets.webcloud import DECIMATE, FramesetPairs
from .protocol.viewer import cloud_message

__all__ = ["RemoteBackend", "ZenohBackend"]

log = logging.getLogger(__name__)

SYNC_S = 0.5


@dataclass
class _Source:
    id: str
    name: str
    selected: bool = False
    discovered: bool = False
    client: Any = None
    subs: dict[tuple[str, StreamKind], Any] = field(default_factory=dict)
    known: dict[str, dict[str, Any]] = field(default_factory=dict)
    pairs: dict[str, FramesetPairs] = field(default_factory=dict)
    error: str = ""
    retry_at: float = 0.0


class RemoteBackend:
    """What ``rgbdcast view`` shows: the devices of the servers the user watches."""

    mode = "view"
    name = "rgbdcast view"

    def __init__(
        self,
        endpoints: list[str],
        discover: bool,
        interfaces: list[str] | None,
        curve: Any = None,
    ) -> None:
        self.viewer: Any = None
        self._curve = curve
        self._lock = threading.Lock()
        self._sources: dict[str, _Source] = {}
        for ep in endpoints:
            sid = make_endpoint(*parse_endpoint(ep))
            self._sources[sid] = _Source(sid, sid, selected=True)
        self._discover = discover
        self._interfaces = interfaces
        self._browser: Any = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sync_loop, name="rgbdcast-view-sync")

    def start(self, viewer: Any) -> None:
        self.viewer = viewer
        if self._discover:
            from .net.discovery import ServerBrowser

            self._browser = ServerBrowser(interfaces=self._interfaces)
            ServerBrowser.on_add_server.connect(self._on_add, sender=self._browser, weak=False)
            ServerBrowser.on_remove_server.connect(
                self._on_remove, sender=self._browser, weak=False
            )
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5.0)
        if self._browser is not None:
            self._browser.close()
        with self._lock:
            sources = list(self._sources.values())
        for src in sources:
            self._disconnect(src)

    # -- discovery (Zeroconf thread) ------------------------------------------------------
    def _on_add(self, browser: Any, server_info: Any) -> None:
        with self._lock:
            src = self._sources.get(server_info.endpoint)
            if src is None:
                self._sources[server_info.endpoint] = _Source(
                    server_info.endpoint, server_info.name, discovered=True
                )
            else:
                src.name = server_info.name

    def _on_remove(self, browser: Any, server_info: Any) -> None:
        with self._lock:
            src = self._sources.get(server_info.endpoint)
            if src is not None and src.discovered and not src.selected:
                del self._sources[src.id]

    # -- ViewerBackend --------------------------------------------------------------------
    def sources(self) -> list[dict[str, Any]]:
        with self._lock:
            return [
                {
                    "id": s.id,
                    "name": s.name,
                    "selected": s.selected,
                    "state": _source_state(s),
                }
                for s in self._sources.values()
            ]

    def select(self, source: str, on: bool) -> None:
        with self._lock:
            src = self._sources.get(source)
            if src is None:
                return
            src.selected = on

    def devices(self) -> list[dict[str, Any]]:
        out = []
        with self._lock:
            sources = [s for s in self._sources.values() if s.selected]
        for src in sources:
            client = src.client
            connected = client is not None and client.is_connected
            for dev_id, info in src.known.items():
                present = client is not None and dev_id in client.devices
                state = "live" if connected and present else "unplugged" if connected else "gone"
                out.append(
                    {
                        "id": f"{src.id}|{dev_id}",
                        "name": f"{src.name}: {info['name']}",
                        "state": state,
                        "streams": info["streams"],
                    }
                )
        return out

    def stats(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        with self._lock:
            sources = [s for s in self._sources.values() if s.selected]
        for src in sources:
            for (dev, kind), sub in list(src.subs.items()):
                snap = sub.snapshot()
                out[f"{src.id}|{dev}/{kind.value}"] = {"dropped": snap.dropped}
        return out

    # -- sync thread ----------------------------------------------------------------------
    def _sync_loop(self) -> None:
        while not self._stop.wait(SYNC_S):
            with self._lock:
                sources = list(self._sources.values())
            for src in sources:
                try:
                    self._sync(src)
                except RgbdcastError as exc:
                    src.error = str(exc)
                    log.debug("source %s: %s", src.id, exc)

    def _sync(self, src: _Source) -> None:
        if not src.selected:
            self._disconnect(src)
            return
        if src.client is None:
            if time.monotonic() < src.retry_at:
                return
            from .client import Client

            # once in, it rides out server restarts
            client = Client(src.id, reconnect=True, curve=self._curve)
            client.on_frame.connect(self._on_frame, sender=client, weak=False)
            try:
                client.connect(timeout=2.0)
            except RgbdcastError as exc:
                client.on_frame.disconnect(self._on_frame, sender=client)
                src.error = f"no answer ({exc}); retrying"
                src.retry_at = time.monotonic() + 2.0
                return
            src.client, src.error = client, ""
        client = src.client
        if not client.is_connected:
            return
        if client.server_name:
            src.name = client.server_name
        for dev_id, record in client.devices.items():
            streams = dict(record.streams)
            cal = record.info.get("calibration")
            if (
                isinstance(cal, dict)
                and cal.get("depth_to_color")
                and {"depth", "color"} <= set(streams)
            ):  # the 3-D view: clouds made here from the calibration the server sends
                streams["points"] = {"codec": "cloud", "decimate": DECIMATE}
                src.pairs.setdefault(dev_id, FramesetPairs())
            src.known[dev_id] = {"name": record.name or dev_id, "streams": streams}
            for kind_name in record.streams:
                kind = StreamKind(kind_name)
                if (dev_id, kind) not in src.subs:
                    # video decodes in order as it arrives (docs/video.md); the rest for a browser
                    video = is_video(str(record.streams[kind_name].get("codec", "")))
                    src.subs[(dev_id, kind)] = client.subscribe(
                        dev_id, kind, decode=video, queue_size=1
                    )

    def _on_frame(self, client: Any, frame: Any = None, subscription: Any = None) -> None:
        """On the client's I/O thread: hand the encoded frame on; never decode here (a video
        frame comes decoded: its decoder needed every unit, in order)."""
        viewer = self.viewer
        if viewer is not None and frame is not None:
            device = f"{client.control_endpoint}|{frame.device_id}"
            if isinstance(frame, Frame):
                viewer.submit(frame, device=device)
                kind, frameset, seq, item = frame.kind, frame.frameset_id, frame.seq, _Held(frame)
            else:
                viewer.submit_encoded(frame, device=device)
                h = frame.header
                kind, frameset, seq, item = h.stream, h.frameset_id, h.seq, frame
            subscription.latest(timeout=0)  # keep the subscription's own queue empty
            src = self._sources.get(client.control_endpoint)
            pairs = src.pairs.get(frame.device_id) if src is not None else None
            if pairs is not None and viewer.watching:
                pair = pairs.offer(kind, frameset, item)
                if pair is not None:
                    make = partial(_remote_cloud, client, device, pairs, *pair)
                    viewer.submit_made(f"{device}/points", seq, make)

    def _disconnect(self, src: _Source) -> None:
        client, src.client = src.client, None
        src.subs = {}
        src.known = {}
        src.pairs = {}
        if client is not None:
            client.on_frame.disconnect(self._on_frame, sender=client)
            client.disconnect()


@dataclass(frozen=True)
class _Held:
    """A frame already decoded, offered where encoded frames are (``decode()`` gives it)."""

    frame: Frame

    def decode(self) -> Frame:
        return self.frame


def _remote_cloud(
    client: Any, device: str, pairs: FramesetPairs, depth: Any, color: Any, send_ms: float
) -> bytes:
    """On the viewer's render pool: decode one frameset and make its cloud with the
    calibration (and table) the client fetched from the server."""
    d, c = depth.decode(), color.decode()
    cloud = client.point_cloud([d, c], decimate=DECIMATE, timeout=3.0)
    bodies = pairs.bodies_near(d.frameset_id)
    body = bodies.decode().bodies if bodies is not None else ()
    return cloud_message(device, d.seq, d.host_time_ns, cloud.points, cloud.colors, body, send_ms)


class ZenohBackend:
    """What ``rgbdcast view --zenoh KEYEXPR`` shows: every stream matching the key expression.
    Devices come from the keys seen and their liveliness tokens (a device whose token went is
    ``gone``); frames are handed on still encoded and decoded only for a browser (video is
    decoded as it arrives: its decoder needs every unit, in order)."""

    mode = "view"

    def __init__(self, keyexpr: str, connect: list[str]) -> None:
        from .zclient import ZenohClient

        self.name = f"rgbdcast view of {keyexpr}"
        self.keyexpr = keyexpr
        self.viewer: Any = None
        self._client = ZenohClient(connect=connect)
        self._devices: dict[str, dict[str, Any]] = {}
        self._stats: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._presence_lock = threading.Lock()
        self._present_cache: set[str] = set()
        self._present_at = float("-inf")
        self._videos: dict[str, Any] = {}
        """Per video stream key: its decoder state (video decodes in order as it arrives)."""
        self._sub: Any = None

    def start(self, viewer: Any) -> None:
        self.viewer = viewer
        self._sub = self._client.session.declare_subscriber(self.keyexpr, self._on_sample)

    def stop(self) -> None:
        if self._sub is not None:
            self._sub.undeclare()
        self._client.close()

    def _on_sample(self, sample: Any) -> None:
        """On a Zenoh thread: check the header and hand the frame on, still encoded."""
        from .errors import ProtocolError
        from .protocol.envelope import parse_encoded
        from .protocol.session import StreamStats
        from .protocol.zkeys import parse_stream_key

        try:
            server, device, stream = parse_stream_key(str(sample.key_expr))
            enc = parse_encoded([sample.attachment.to_bytes(), sample.payload.to_bytes()])
        except (UsageError, ProtocolError, AttributeError):
            return
        dev_id = f"{server}|{device}"
        with self._lock:
            entry = self._devices.setdefault(
                dev_id, {"id": dev_id, "name": f"{server}: {device}", "streams": {}}
            )
            if stream not in entry["streams"]:
                h = enc.header
                entry["streams"][stream] = {
                    "width": h.shape[1] if len(h.shape) > 1 else 0,
                    "height": h.shape[0] if len(h.shape) > 1 else 0,
                    "codec": h.codec,
                    "units": h.units,
                }
            stats = self._stats.setdefault(f"{dev_id}/{stream}", StreamStats())
        stats.record(enc.header, enc.nbytes, time.time_ns())
        if self.viewer is not None and is_video(enc.header.codec):  # in order, as it comes
            from ._clientvideo import VideoState, decode_video

            key = str(sample.key_expr)
            state = self._videos.setdefault(key, VideoState())
            ask = partial(self._client._ask_keyframe, key)
            frame = decode_video(state, enc, lambda exc: None, ask)
            if frame is not None:
                self.viewer.submit(frame, device=dev_id)
        elif self.viewer is not None:
            self.viewer.submit_encoded(enc, device=dev_id)

    def _present(self) -> set[str]:
        """Devices whose liveliness token is up; asked of Zenoh at most once per refresh period,
        however many browsers ask."""
        with self._presence_lock:
            now = time.monotonic()
            if now - self._present_at >= SYNC_S:
                present = set()
                try:
                    for key in self._client.devices(timeout=0.5):
                        _, server, device = key.split("/", 2)
                        present.add(f"{server}|{device}")
                except Exception:  # no router reachable right now
                    pass
                self._present_cache, self._present_at = present, time.monotonic()
            return self._present_cache

    def devices(self) -> list[dict[str, Any]]:
        present = self._present()
        with self._lock:
            entries = [dict(e, streams=dict(e["streams"])) for e in self._devices.values()]
        for e in entries:
            e["state"] = "live" if e["id"] in present else "gone"
        return entries

    def stats(self) -> dict[str, dict[str, Any]]:
        now = time.time_ns()
        with self._lock:
            items = list(self._stats.items())
        return {k: {"dropped": s.snapshot(now).dropped} for k, s in items}

    def sources(self) -> list[dict[str, Any]]:
        return []

    def select(self, source: str, on: bool) -> None:
        """One key expression: nothing to pick."""


def _source_state(src: _Source) -> str:
    if not src.selected:
        return ""
    if src.client is None:
        return src.error or "connecting"
    return "connected" if src.client.is_connected else "not answering"
