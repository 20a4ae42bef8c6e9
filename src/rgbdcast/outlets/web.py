"""The web viewer as an outlet: ``serve --web``. The viewer itself (page, WebSocket, one frame in
flight per browser and stream) is :mod:`rgbdcast.outlets.webviewer`; this shows it the server's
devices and hands it their frames: color in the stream's own JPEG (encoded only while a browser
watches), every other stream as delivered, rendered for browsers only when one asks."""

from __future__ import annotations

import logging
import secrets
from typing import Any

from ..errors import UsageError
from ..frames import Frame, StreamKind
from ..net.addresses import DEFAULT_WEB_PORT, parse_hostport
from ..protocol.envelope import parse_header
from .base import DevicePort, OutletHost
from .webcloud import DECIMATE, CloudTap
from .webviewer import WebViewer

__all__ = ["WebOutlet"]

log = logging.getLogger(__name__)


class WebOutlet:
    """The web viewer of a server.

    *address* is ``PORT`` or ``HOST:PORT`` (default port 5680; 0 picks a free one). The host
    defaults to the server's bind address, but a secure server's viewer stays on 127.0.0.1
    unless told otherwise, and needs a token every request must carry (its :attr:`url` has it).
    With *fallback*, a busy port is replaced by a free one (with a warning) instead of failing.
    """

    name = "web"

    def __init__(self, address: str | int = DEFAULT_WEB_PORT, *, fallback: bool = False) -> None:
        parse_hostport(address, "")  # a malformed address is refused here
        self._address = address
        self.fallback = fallback
        self.viewer: WebViewer | None = None
        """The running viewer (None while the server is stopped)."""
        self._host: OutletHost | None = None
        self._bind: tuple[str, int] = ("", 0)
        self._token: str | None = None
        self._clouds: dict[str, CloudTap] = {}
        self._ports: dict[str, Any] = {}
        """The video streams' ports by ``device/stream``: where a browser's keyframe asks go."""

    def attach(self, host: OutletHost) -> None:
        default = "127.0.0.1" if host.secure is not None else host.address
        self._bind = parse_hostport(self._address, default)
        self._token = secrets.token_urlsafe(16) if host.secure is not None else None
        self._host = host

    def start(self) -> None:
        assert self._host is not None
        host, port = self._bind
        backend = _ServerBackend(self._host, self._clouds, self._ports)
        viewer = WebViewer(host, port, backend, token=self._token)
        try:
            viewer.start()
        except OSError as exc:
            if not self.fallback:
                raise UsageError(
                    f"cannot listen on {host}:{port} for the web viewer: {exc.strerror}"
                    " (choose another --web port, or --no-web)"
                ) from exc
            log.warning("web port %d is busy (%s); using a free port", port, exc.strerror)
            viewer = WebViewer(host, 0, backend, token=self._token)
            viewer.start()
        self.viewer = viewer
        log.info("web viewer at %s", viewer.url)

    def stop(self) -> None:
        viewer, self.viewer = self.viewer, None
        if viewer is not None:
            viewer.stop()

    def device_added(self, device: DevicePort) -> None:
        viewer = self.viewer
        if viewer is None:
            return
        for port in device.streams.values():
            if port.kind is StreamKind.color and port.codec == "jpeg":
                # browsers get the stream's own JPEG, encoded only while one of them watches
                tap = _JpegTap(viewer)
                port.tap_encoded(tap, tap.wanted)
            elif port.kind is StreamKind.color and port.codec == "h264":
                # browsers with WebCodecs get the units, the others JPEG made while they watch
                video = _VideoTap(viewer)
                port.tap_encoded(video, video.wanted)
                self._ports[f"{device.id}/{port.kind.value}"] = port
            else:
                port.tap_frames(viewer.submit)
        if CloudTap.possible(device):  # the 3-D view, once the device has a calibration
            self._clouds[device.id] = CloudTap(viewer, device)

    def device_removed(self, device_id: str) -> None:
        self._clouds.pop(device_id, None)
        if self.viewer is not None:
            self.viewer.forget(device_id)

    @property
    def url(self) -> str | None:
        """The viewer's address to open in a browser (with its token), while it runs."""
        return self.viewer.url if self.viewer is not None else None

    @property
    def port(self) -> int | None:
        return self.viewer.port if self.viewer is not None else None

    def endpoints(self) -> dict[str, str]:
        return {"web": self.viewer.url} if self.viewer is not None else {}

    def stats(self) -> dict[str, Any] | None:
        return self.viewer.stats.to_dict() if self.viewer is not None else None


class _JpegTap:
    """Hands the viewer a color frame with the JPEG its publisher made of it."""

    __slots__ = ("_viewer",)

    def __init__(self, viewer: WebViewer) -> None:
        self._viewer = viewer

    def __call__(self, frame: Frame | None, header: bytes, payload: Any) -> None:
        if frame is not None:
            self._viewer.submit(frame, jpeg=payload)

    def wanted(self) -> bool:
        return self._viewer.watching


class _VideoTap:
    """Hands the viewer every unit of a video color stream, and the frame it was made of."""

    __slots__ = ("_viewer",)

    def __init__(self, viewer: WebViewer) -> None:
        self._viewer = viewer

    def __call__(self, frame: Frame | None, header: bytes, payload: Any) -> None:
        if frame is None:
            return
        head = parse_header(header)
        self._viewer.submit(frame)
        self._viewer.submit_unit(frame, head.au or 0, head.key, payload)

    def wanted(self) -> bool:
        return self._viewer.watching


class _ServerBackend:
    """What the viewer shows of the server it belongs to: its devices, and only itself."""

    mode = "server"

    def __init__(
        self, host: OutletHost, clouds: dict[str, CloudTap], ports: dict[str, Any]
    ) -> None:
        self._host = host
        self._clouds = clouds
        self._ports = ports
        self.name = host.name

    def keyframe(self, key: str) -> None:
        """A browser starts (or restarts) decoding a video stream: ask it for a keyframe."""
        port = self._ports.get(key)
        if port is not None:
            port.request_keyframe()

    def devices(self) -> list[dict[str, Any]]:
        out = []
        for d in self._host.device_states():
            streams = {
                k.value: {**info.to_dict(), "codec": d.codecs.get(k)}
                for k, info in d.streams.items()
            }
            cloud = self._clouds.get(d.id)
            if cloud is not None and cloud.calibrated():
                streams["points"] = {"codec": "cloud", "decimate": DECIMATE}
            out.append({"id": d.id, "name": d.name, "state": d.state, "streams": streams})
        return out

    def stats(self) -> dict[str, dict[str, Any]]:
        return {
            key: {"dropped": s["dropped_busy"], "sent": s["sent"]}
            for key, s in self._host.stream_stats().items()
        }

    def sources(self) -> list[dict[str, Any]]:
        return []

    def select(self, source: str, on: bool) -> None:
        """A server shows only itself."""
