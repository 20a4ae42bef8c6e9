"""The bridge behind ``rgbdcast bridge``: rgbdcast servers republished into Zenoh, ROS 2 and
Foxglove.

How it works: for each rgbdcast server (named, or found on Zeroconf) it holds one
:class:`~rgbdcast.client.Client` subscribed to every stream without decoding; the client's I/O
thread hands each frame, with the header exactly as received, to that stream's senders (each a
latest-frame slot and its own thread: :class:`~rgbdcast.outlets.zenoh.StreamSender`, the ROS 2
and Foxglove converters), so a stuck link never slows the ZeroMQ side. Devices are announced
(liveliness and ``@meta``) as their server describes them, and withdrawn when they or their
server go away. On Foxglove a device keeps its id as its topic prefix unless a device of another
server has it already; it is then ``<server>_<device>``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from functools import partial
from typing import Any

from .errors import RgbdcastError
from .frames import StreamKind
from .geometry.calibration import Calibration
from .geometry.rigfile import RigFile
from .net.addresses import make_endpoint, parse_endpoint
from .outlets.foxglove import FoxglovePublishing
from .outlets.ros2 import Ros2Publishing
from .outlets.zenoh import ZenohLink, ZenohPublishing
from .protocol.ros2 import ros_name

__all__ = ["Bridge"]

log = logging.getLogger(__name__)

SYNC_S = 0.5


class Bridge:
    """Republish rgbdcast servers into Zenoh (on *link*, natively and/or as ROS 2) and/or to
    Foxglove clients (*foxglove*)."""

    def __init__(
        self,
        link: ZenohLink | None,
        endpoints: list[str],
        interfaces: list[str] | None = None,
        *,
        native: bool = True,
        ros2_domain: int | None = None,
        rig_file: RigFile | None = None,
        foxglove: FoxglovePublishing | None = None,
    ) -> None:
        if link is None and (native or ros2_domain is not None):
            raise ValueError("Zenoh and ROS 2 bridging need a Zenoh link")
        self.link = link
        self.foxglove = foxglove
        self._fox_names: dict[tuple[str, str], str] = {}
        self._rig = rig_file
        self._native = native
        self._ros2_domain = ros2_domain
        self._ros: dict[str, Ros2Publishing] = {}
        self._endpoints = [make_endpoint(*parse_endpoint(ep)) for ep in endpoints]
        self._interfaces = interfaces
        self._clients: dict[str, Any] = {}
        self._publishing: dict[str, ZenohPublishing] = {}
        self._devices: dict[str, set[str]] = {}
        self._subs: dict[str, dict[tuple[str, StreamKind], Any]] = {}
        self._browser: Any = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="rgbdcast-bridge-sync")

    def start(self) -> None:
        if not self._endpoints:
            from .net.discovery import ServerBrowser

            self._browser = ServerBrowser(interfaces=self._interfaces)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5.0)
        if self._browser is not None:
            self._browser.close()
        for endpoint in list(self._clients):
            self._drop(endpoint)

    @property
    def bridged(self) -> dict[str, list[str]]:
        """Server endpoint -> device ids published."""
        return {ep: sorted(devices) for ep, devices in self._devices.items()}

    def _loop(self) -> None:
        while not self._stop.wait(SYNC_S):
            wanted = list(self._endpoints)
            if self._browser is not None:
                wanted += [s.endpoint for s in self._browser.servers]
            for endpoint in wanted:
                try:
                    self._sync(endpoint)
                except RgbdcastError as exc:
                    log.debug("bridging %s: %s", endpoint, exc)
            for endpoint in set(self._clients) - set(wanted):
                self._drop(endpoint)

    def _sync(self, endpoint: str) -> None:
        from .client import Client

        client = self._clients.get(endpoint)
        if client is None:
            client = Client(endpoint, reconnect=True)
            client.connect(timeout=2.0)
            client.on_frame.connect(self._on_frame, sender=client, weak=False)
            self._clients[endpoint] = client
            self._subs[endpoint] = {}
            log.info("bridging %s (%s)", endpoint, client.server_name)
        if endpoint not in self._devices:
            if not client.server_name:
                return
            self._devices[endpoint] = set()
            if self.link is not None:
                self._publishing[endpoint] = ZenohPublishing(self.link, client.server_name)
            if self.link is not None and self._ros2_domain is not None:
                self._ros[endpoint] = Ros2Publishing(
                    self.link, self._ros2_domain, client.server_name
                )
        known = self._devices[endpoint]
        devices = client.devices if client.is_connected else {}
        for dev_id in known - set(devices):  # unplugged, or its server went away
            self._remove_device(endpoint, dev_id)
        for dev_id, record in devices.items():
            if dev_id not in known:
                known.add(dev_id)
                self._add_device(endpoint, client, dev_id, record)
            for stream in record.streams:
                key = (dev_id, StreamKind(stream))
                if key not in self._subs[endpoint]:
                    self._subs[endpoint][key] = client.subscribe(
                        dev_id, stream, decode=False, queue_size=1
                    )

    def _add_device(self, endpoint: str, client: Any, dev_id: str, record: Any) -> None:
        kinds = [StreamKind(k) for k in record.streams]
        calibration, table = partial(_calibration, client, dev_id), partial(_table, client, dev_id)
        placed = None
        cam = self._rig.devices.get(f"{endpoint} {dev_id}") if self._rig else None
        if self._rig is not None and cam is not None:
            placed = (self._rig.frame, cam.rig_from_depth)
        pub = self._publishing.get(endpoint)
        if pub is not None:
            info = {"id": dev_id, "name": record.name, "streams": record.streams, **record.info}
            # a presence entry even when only ROS 2 is asked for: it tracks what is bridged
            pub.add_device(dev_id, list(record.streams) if self._native else [], _const(info))
        codecs = {StreamKind(k): str(s.get("codec", "")) for k, s in record.streams.items()}
        ask = partial(_ask_keyframe, client, dev_id)
        ros = self._ros.get(endpoint)
        if ros is not None:
            ros.add_device(dev_id, kinds, calibration, table, placed, codecs, ask)
        if self.foxglove is not None:
            taken = {n for k, n in self._fox_names.items() if k[0] != endpoint}
            name = dev_id if dev_id not in taken else f"{ros_name(client.server_name)}_{dev_id}"
            self._fox_names[(endpoint, dev_id)] = name
            self.foxglove.add_device(name, kinds, calibration, table, placed, codecs, ask)

    def _remove_device(self, endpoint: str, dev_id: str) -> None:
        self._devices.get(endpoint, set()).discard(dev_id)
        pub = self._publishing.get(endpoint)
        if pub is not None:
            pub.remove_device(dev_id)
        ros = self._ros.get(endpoint)
        if ros is not None:
            ros.remove_device(dev_id)
        name = self._fox_names.pop((endpoint, dev_id), None)
        if self.foxglove is not None and name is not None:
            self.foxglove.remove_device(name)
        for key in [k for k in self._subs.get(endpoint, {}) if k[0] == dev_id]:
            self._subs[endpoint].pop(key).close()

    def _on_frame(self, client: Any, frame: Any = None, subscription: Any = None) -> None:
        """On the client's I/O thread: hand the frame on as received; never wait."""
        subscription.latest(timeout=0)  # keep its queue empty: the sender has the newest
        endpoint = client.control_endpoint
        pub = self._publishing.get(endpoint)
        sender = pub.sender(frame.device_id, frame.kind.value) if pub is not None else None
        if sender is not None:
            sender.submit(None, frame.raw_header, frame.payload, codec=frame.header.codec)
        ros = self._ros.get(endpoint)
        ros_sender = ros.sender(frame.device_id, frame.kind) if ros is not None else None
        if ros_sender is not None:
            ros_sender.submit(None, frame.raw_header, frame.payload)
        geometry = ros.geometry(frame.device_id) if ros is not None else None
        if geometry is not None and frame.kind in (StreamKind.depth, StreamKind.color):
            geometry.submit(None, frame.raw_header, frame.payload)
        name = self._fox_names.get((endpoint, frame.device_id))
        if self.foxglove is not None and name is not None:
            topics = self.foxglove.stream(name, frame.kind)
            if topics is not None and topics.wanted():
                topics.submit(None, frame.raw_header, frame.payload)
            fox_geo = self.foxglove.geometry(name)
            depth_or_color = frame.kind in (StreamKind.depth, StreamKind.color)
            if fox_geo is not None and depth_or_color and fox_geo.wanted():
                fox_geo.submit(None, frame.raw_header, frame.payload)

    def _drop(self, endpoint: str) -> None:
        for dev_id in list(self._devices.get(endpoint, ())):
            self._remove_device(endpoint, dev_id)
        self._devices.pop(endpoint, None)
        client = self._clients.pop(endpoint, None)
        pub = self._publishing.pop(endpoint, None)
        if pub is not None:
            pub.close()
        ros = self._ros.pop(endpoint, None)
        if ros is not None:
            ros.close()
        self._subs.pop(endpoint, None)
        if client is not None:
            client.on_frame.disconnect(self._on_frame, sender=client)
            client.disconnect()


def _const(value: dict[str, Any]) -> Callable[[], dict[str, Any]]:
    return lambda: value


def _calibration(client: Any, device_id: str) -> Calibration | None:
    """The upstream device's calibration for the ROS 2 geometry (None while it has none)."""
    try:
        cal: Calibration = client.calibration(device_id, timeout=2.0)
        return cal
    except RgbdcastError:
        return None


def _table(client: Any, device_id: str, name: str) -> Any:
    try:
        return client.calibration_table(device_id, name, timeout=5.0)
    except RgbdcastError:
        return None


def _ask_keyframe(client: Any, device: str, kind: StreamKind) -> None:
    """A bridged video stream lost a unit on its way out: ask its origin server for a keyframe."""
    client.request_keyframe(device, kind)
