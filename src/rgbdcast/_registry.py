"""The devices a server serves: their streams while open, where their frames go, and recovery.

How this works: each device has an entry. While the server runs, an open entry holds one
:class:`~rgbdcast.net.publisher.StreamPublisher` per stream and, around each, the
:class:`~rgbdcast.outlets.base.StreamPort` the outlets tap; the device's ``on_frame`` signal
routes every frame to its stream's port (on the device's thread). A device that will not start,
or fails mid-stream, is closed, marked failed (who/me no longer lists it) and retried on a
thread of its own: after 0.5 s, then twice as long each time, at most 10 s apart, until it opens
again under the same id or the server stops. One lock, the server's, guards the entries.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from ._whome import checked_calibration
from .devices.base import Device
from .errors import DeviceError, UsageError
from .frames import Frame, StreamKind
from .net.publisher import StreamPublisher
from .outlets.base import DevicePort, DeviceState, OutletSet, StreamPort

__all__ = ["RETRY_FIRST_S", "RETRY_MAX_S", "DeviceRegistry"]

RETRY_FIRST_S = 0.5
RETRY_MAX_S = 10.0
"""A failed device is retried after 0.5 s, then twice as long each time, at most 10 s apart."""

log = logging.getLogger("rgbdcast.server")


@dataclass
class _Entry:
    device: Device
    ports: dict[StreamKind, StreamPort] = field(default_factory=dict)
    publishers: dict[StreamKind, StreamPublisher] = field(default_factory=dict)
    started_here: bool = False
    failed: bool = False
    calibration_error: str | None = None


def _table(device: Device, name: str) -> Any:
    """A device's per-pixel table for an outlet (None if it fails: a device bug)."""
    try:
        return device.calibration_table(name)
    except Exception as exc:
        log.warning("device %s: calibration table %s failed: %s", device.id, name, exc)
        return None


class DeviceRegistry:
    """The devices of one server. *open_streams* makes a device's publishers (bound, not yet
    started); *outlets* hears of every device opened and closed; *changed* is called when the
    set of devices clients see has changed."""

    def __init__(
        self,
        lock: threading.RLock,
        open_streams: Callable[[Device], dict[StreamKind, StreamPublisher]],
        outlets: OutletSet,
        changed: Callable[[], None],
    ) -> None:
        self.lock = lock
        self._open_streams = open_streams
        self._outlets = outlets
        self._changed = changed
        self._entries: dict[str, _Entry] = {}
        self._routes: dict[str, dict[StreamKind, StreamPort]] = {}
        self._running = False
        self._stopping = threading.Event()

    # -- the set of devices ---------------------------------------------------------------
    def add(self, device: Device) -> None:
        with self.lock:
            if device.id in self._entries:
                raise UsageError(f"a device with id {device.id!r} is already served")
            entry = _Entry(device)
            self._entries[device.id] = entry
            if self._running:
                self._open_or_recover(entry)
        self._changed()

    def remove(self, device_id: str) -> None:
        with self.lock:
            entry = self._entries.pop(device_id, None)
            if entry is None:
                raise UsageError(f"device {device_id!r} is not served here")
            if self._running:
                self._close(entry)
        self._changed()

    @property
    def devices(self) -> list[Device]:
        with self.lock:
            return [e.device for e in self._entries.values()]

    def open_streams(self) -> list[tuple[Device, dict[StreamKind, StreamPublisher]]]:
        """Each device that is not failed, with the publishers of its open streams."""
        with self.lock:
            entries = list(self._entries.values())
        return [(e.device, dict(e.publishers)) for e in entries if not e.failed]

    def states(self) -> list[DeviceState]:
        with self.lock:
            entries = list(self._entries.values())
        return [
            DeviceState(
                id=e.device.id,
                name=e.device.name,
                state="unplugged" if e.failed else "live" if e.publishers else "starting",
                streams=dict(e.device.streams),
                codecs={k: p.codec_name for k, p in e.publishers.items()},
            )
            for e in entries
        ]

    # -- running ----------------------------------------------------------------------------
    def open_all(self) -> None:
        """The server starts: open every device (those that will not start are retried)."""
        with self.lock:
            self._stopping.clear()
            self._running = True
            for entry in self._entries.values():
                self._open_or_recover(entry)

    def halt(self) -> None:
        """The server is stopping: no device opens again from now on."""
        with self.lock:
            self._running = False
            self._stopping.set()

    def close_all(self) -> None:
        with self.lock:
            for entry in self._entries.values():
                self._close(entry)

    def _open(self, entry: _Entry) -> None:
        dev = entry.device
        pubs = self._open_streams(dev)
        entry.publishers = pubs
        entry.ports = {
            kind: StreamPort(
                dev.id,
                kind,
                dev.streams[kind],
                pub.codec_name,
                pub.submit,
                pub.add_tap,
                pub.tap_failed,
                pub.request_keyframe,
            )
            for kind, pub in pubs.items()
        }
        try:
            self._outlets.device_added(
                DevicePort(
                    dev.id,
                    dev.name,
                    dict(entry.ports),
                    lambda: checked_calibration(dev)[0],
                    partial(_table, dev),
                )
            )
            for pub in pubs.values():
                pub.start()
            self._routes = {**self._routes, dev.id: entry.ports}
            self._stamp_calibration(entry)
            Device.on_frame.connect(self._on_frame, sender=dev, weak=False)
            Device.on_error.connect(self._on_error, sender=dev, weak=False)
            Device.on_calibration.connect(self._on_calibration, sender=dev, weak=False)
            if not dev.is_running:
                dev.start()
                entry.started_here = True
        except Exception:
            self._close(entry)
            raise

    def _close(self, entry: _Entry) -> None:
        dev = entry.device
        Device.on_frame.disconnect(self._on_frame, sender=dev)
        Device.on_error.disconnect(self._on_error, sender=dev)
        Device.on_calibration.disconnect(self._on_calibration, sender=dev)
        self._routes = {k: v for k, v in self._routes.items() if k != dev.id}
        if entry.started_here:
            dev.stop()
            entry.started_here = False
        for pub in entry.publishers.values():
            pub.stop()
        if entry.ports:  # after the publishers: no tap runs any more
            self._outlets.device_removed(dev.id)
        entry.publishers = {}
        entry.ports = {}

    def _stamp_calibration(self, entry: _Entry) -> None:
        """Every header of the device's streams names its calibration's revision; a refused
        calibration is logged (once per reason) and the streams go out without one."""
        cal, error = checked_calibration(entry.device)
        if error is not None and error != entry.calibration_error:
            log.error(
                "device %s offers a calibration that is refused (%s); it is served without one",
                entry.device.id,
                error,
            )
        entry.calibration_error = error
        for pub in entry.publishers.values():
            pub.calibration = cal.revision if cal is not None else None

    def _on_calibration(self, device: Device, **_: Any) -> None:
        """The device's calibration changed (on any thread): new headers, and clients told."""
        with self.lock:
            entry = self._entries.get(device.id)
            if entry is None or not entry.publishers:
                return
            self._stamp_calibration(entry)
        self._changed()

    def _on_frame(self, device: Device, frame: Frame | None = None, **_: Any) -> None:
        ports = self._routes.get(device.id)
        if ports is not None and frame is not None:
            port = ports.get(frame.kind)
            if port is not None:
                port.submit(frame)

    # -- failure and recovery ---------------------------------------------------------------
    def _open_or_recover(self, entry: _Entry) -> None:
        """Open a device's streams and start it; if it will not start, keep retrying."""
        try:
            self._open(entry)
        except DeviceError as exc:
            log.warning(
                "device %s is not available (%s); retrying in the background", entry.device.id, exc
            )
            entry.failed = True
            self._start_recovery(entry)

    def _on_error(self, device: Device, error: BaseException | None = None, **_: Any) -> None:
        """A device failed mid-stream (on its own thread): drop it from who/me and retry."""
        with self.lock:
            entry = self._entries.get(device.id)
            if entry is None or entry.failed or not self._running:
                return
            entry.failed = True
        log.error("device %s failed (%s); removed from who/me, retrying", device.id, error)
        self._start_recovery(entry, close=True)

    def _start_recovery(self, entry: _Entry, close: bool = False) -> None:
        threading.Thread(
            target=self._recover,
            args=(entry, close),
            daemon=True,
            name=f"rgbdcast-recover-{entry.device.id}",
        ).start()

    def _recover(self, entry: _Entry, close: bool) -> None:
        dev = entry.device
        if close:
            with self.lock:
                if self._entries.get(dev.id) is entry and self._running:
                    self._close(entry)
            self._changed()
        delay = RETRY_FIRST_S
        while not self._stopping.wait(delay):
            with self.lock:
                if self._entries.get(dev.id) is not entry or not self._running:
                    return
                try:
                    self._open(entry)
                except Exception as exc:
                    log.debug("device %s still unavailable: %s", dev.id, exc)
                    delay = min(delay * 2, RETRY_MAX_S)
                    continue
                entry.failed = False
            log.warning("device %s is back", dev.id)
            self._changed()
            return
