"""What a client knows about its devices' geometry: calibrations, per-pixel tables, clouds.

How this works: who/me carries each device's calibration, and every frame header names the
revision it was taken under. A client parses (and validates) a calibration when first asked,
and asks the server again (the ``calibration`` control request) when a frame names a revision
it does not hold: a calibration that changes while streaming (a fit finishing on the sensor's
host) reaches the consumer with the first frame taken under it. Per-pixel tables (Kinect v2's
depth-to-camera-space table, ~1.7 MB) are fetched once per revision, on first use.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from .errors import ProtocolError, UsageError
from .frames import Frame, StreamKind
from .framesets import AsyncFramesetSubscription, FramesetSubscription
from .geometry.calibration import TABLE_DEPTH_TO_CAMERA, Calibration
from .geometry.camera import check_table
from .geometry.pointcloud import PointCloud, point_cloud
from .protocol.control import MessageType

__all__ = ["AsyncClientGeometry", "ClientGeometry", "FramesetMismatch"]


class FramesetMismatch(UsageError):
    """Frames handed to one point cloud come from different devices or framesets."""


class _GeometryCore:
    """What both clients' geometry shares: the cache, validation, and the decisions."""

    _view: Any

    def _init_geometry(self) -> None:
        self._geo_lock = threading.Lock()
        self._calibrations: dict[str, Calibration] = {}
        self._tables: dict[tuple[str, str, str], np.ndarray] = {}
        self.frameset_mismatches = 0
        """Point clouds refused because their frames came from different framesets."""
        self.bad_calibrations = 0
        """Calibrations the server sent that were malformed or implausible (refused)."""

    # -- calibration --------------------------------------------------------------------------
    def _parse(self, device_id: str, raw: Any) -> Calibration:
        try:
            cal = Calibration.from_dict(raw)
        except UsageError as exc:
            with self._geo_lock:
                self.bad_calibrations += 1
            raise ProtocolError(
                f"the server sent an invalid calibration for {device_id}: {exc}"
            ) from None
        if cal.device_id != device_id:
            with self._geo_lock:
                self.bad_calibrations += 1
            raise ProtocolError(f"the server sent {cal.device_id}'s calibration for {device_id}")
        return cal

    def _held(self, device_id: str, revision: str | None) -> tuple[Calibration | None, bool]:
        """The calibration to use without asking (or None), and whether the server must be
        asked: who/me carries it; a frame naming another revision means it changed."""
        with self._geo_lock:
            held = self._calibrations.get(device_id)
        if held is not None and (revision is None or held.revision == revision):
            return held, False
        record = self._view.devices.get(device_id)
        if record is None:
            known = ", ".join(self._view.devices) or "none"
            raise UsageError(f"device {device_id!r} is not on this server (devices: {known})")
        raw = record.info.get("calibration")
        cal = self._parse(device_id, raw) if raw is not None else None
        if cal is None or (revision is not None and cal.revision != revision):
            return None, True
        self._keep(cal)
        return cal, False

    def _keep(self, cal: Calibration) -> None:
        with self._geo_lock:
            self._calibrations[cal.device_id] = cal

    def _digest(
        self, device_id: str, answer: Any, parts: list[bytes]
    ) -> tuple[Calibration, dict[str, np.ndarray]]:
        """A calibration reply, checked: the calibration and its tables."""
        if not isinstance(answer, dict):
            raise ProtocolError("calibration reply must be an object")
        if answer.get("calibration") is None:
            reason = answer.get("error") or "it offers none"
            raise UsageError(
                f"device {device_id} has no calibration ({reason}); point clouds need one "
                "(for a webcam: serve --calibration FILE)"
            )
        cal = self._parse(device_id, answer["calibration"])
        got: dict[str, np.ndarray] = {}
        metas = answer.get("tables") or {}
        if not isinstance(metas, dict):
            raise ProtocolError("calibration reply: tables must be an object")
        for name, meta in metas.items():
            got[name] = self._table(cal, name, meta, parts)
        self._keep(cal)
        return cal, got

    def _table(self, cal: Calibration, name: str, meta: Any, parts: list[bytes]) -> np.ndarray:
        if name != TABLE_DEPTH_TO_CAMERA or cal.depth is None:
            raise ProtocolError(f"calibration reply: unexpected table {name!r}")
        try:
            part = parts[int(meta["part"])]
            shape = tuple(int(v) for v in meta["shape"])
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise ProtocolError(f"calibration reply: bad table {name!r}: {exc}") from None
        want = (cal.depth.height, cal.depth.width, 2)
        if shape != want or meta.get("dtype") != "<f4" or len(part) != 4 * int(np.prod(want)):
            raise ProtocolError(f"calibration reply: table {name!r} is not float32 {want}")
        table = np.frombuffer(part, "<f4").reshape(want)
        if not np.isfinite(table).all() or np.abs(table).max() > 10:
            with self._geo_lock:
                self.bad_calibrations += 1
            raise ProtocolError(f"calibration reply: table {name!r} holds implausible rays")
        check_table(table, cal.depth.width, cal.depth.height)
        return table

    def _held_table(self, cal: Calibration, name: str) -> np.ndarray | None:
        with self._geo_lock:
            return self._tables.get((cal.device_id, cal.revision, name))

    def _keep_table(self, cal: Calibration, name: str, table: np.ndarray) -> None:
        with self._geo_lock:
            self._tables = {k: v for k, v in self._tables.items() if k[0] != cal.device_id}
            self._tables[(cal.device_id, cal.revision, name)] = table

    def _pair(self, frames: Mapping[Any, Frame] | Iterable[Frame]) -> tuple[Frame, Frame]:
        """The depth and color frames of one frameset, or why not."""
        items = list(frames.values()) if isinstance(frames, Mapping) else list(frames)
        by_kind = {f.kind: f for f in items}
        depth, color = by_kind.get(StreamKind.depth), by_kind.get(StreamKind.color)
        if depth is None or color is None:
            raise UsageError("a point cloud needs a depth frame and a color frame of one frameset")
        if depth.device_id != color.device_id or depth.frameset_id != color.frameset_id:
            with self._geo_lock:
                self.frameset_mismatches += 1
            raise FramesetMismatch(
                f"depth {depth.device_id}#{depth.frameset_id} and color "
                f"{color.device_id}#{color.frameset_id} are not one frameset; match them by "
                "frameset id (subscribe_frameset does)"
            )
        return depth, color


def _cloud(
    depth: Frame, color: Frame, cal: Calibration, rays: np.ndarray | None, opts: dict[str, Any]
) -> PointCloud:
    return point_cloud(depth.array, color.array, cal, rays=rays, **opts)  # BGR or BGRA


_CLOUD_DOC = """The colored point cloud of one frameset (its depth and color frames): float32
        metres in the depth camera's optical frame, uint8 RGB, occlusion-tested. Uses the
        device's exact per-pixel table where it has one. *organized*, *decimate*, *z_range*,
        *box* and *keep_uncolored* are :func:`rgbdcast.geometry.point_cloud`'s."""


class ClientGeometry(_GeometryCore):
    """Mixed into :class:`~rgbdcast.client.Client`: calibration and point clouds."""

    def _call(
        self, mtype: MessageType, timeout: float | None, payload: dict[str, Any] | None = None
    ) -> Any:
        raise NotImplementedError

    def calibration(
        self, device_id: str, revision: str | None = None, timeout: float | None = None
    ) -> Calibration:
        """The device's calibration (from who/me; asked again if *revision*, a frame's
        ``calibration``, names another). :class:`UsageError` saying why if it has none."""
        cal, ask = self._held(device_id, revision)
        if ask or cal is None:
            cal = self._fetch(device_id, (), timeout)[0]
        return cal

    def _fetch(
        self, device_id: str, tables: Iterable[str], timeout: float | None
    ) -> tuple[Calibration, dict[str, np.ndarray]]:
        answer, parts = self._call(
            MessageType.calibration, timeout, {"device": device_id, "tables": list(tables)}
        )
        return self._digest(device_id, answer, parts)

    def calibration_table(
        self, device_id: str, name: str = TABLE_DEPTH_TO_CAMERA, timeout: float | None = None
    ) -> np.ndarray | None:
        """A per-pixel table of the device's calibration (fetched once per revision), or None
        if its calibration has no such table."""
        cal = self.calibration(device_id, timeout=timeout)
        if name not in cal.tables:
            return None
        table = self._held_table(cal, name)
        if table is None:
            fresh, tables = self._fetch(device_id, [name], timeout)
            table = tables[name]
            self._keep_table(fresh, name, table)
        return table

    # -- framesets and point clouds ------------------------------------------------------
    def subscribe_frameset(
        self,
        device_id: str,
        streams: Iterable[StreamKind | str] = (StreamKind.depth, StreamKind.color),
        *,
        queue_size: int = 2,
        lazy: bool = False,
    ) -> FramesetSubscription:
        """Receive several streams of one device matched by frameset id (default depth and
        color: what :meth:`point_cloud` takes)::

            for frameset in client.subscribe_frameset("mock0"):
                cloud = client.point_cloud(frameset)

        With *lazy*, images are decoded when their pixels are first read, so framesets a
        consumer skips cost no decoding."""
        kinds = list(dict.fromkeys(StreamKind(s) for s in streams))
        subs: list[Any] = []
        try:
            for kind in kinds:
                subs.append(
                    self.subscribe(  # type: ignore[attr-defined]
                        device_id, kind, queue_size=queue_size, decode="lazy" if lazy else True
                    )
                )
        except BaseException:
            for sub in subs:
                sub.close()
            raise
        return FramesetSubscription(self, device_id, subs)

    # -- point clouds -------------------------------------------------------------------------
    def point_cloud(
        self,
        frames: Mapping[Any, Frame] | Iterable[Frame],
        *,
        organized: bool = False,
        decimate: int = 1,
        z_range: tuple[float, float] | None = None,
        box: tuple[tuple[float, float, float], tuple[float, float, float]] | None = None,
        keep_uncolored: bool = False,
        timeout: float | None = None,
    ) -> PointCloud:
        depth, color = self._pair(frames)
        cal = self.calibration(depth.device_id, depth.calibration, timeout)
        rays = None
        if TABLE_DEPTH_TO_CAMERA in cal.tables:
            rays = self.calibration_table(depth.device_id, TABLE_DEPTH_TO_CAMERA, timeout)
        opts = {"organized": organized, "decimate": decimate, "z_range": z_range, "box": box}
        return _cloud(depth, color, cal, rays, {**opts, "keep_uncolored": keep_uncolored})

    point_cloud.__doc__ = _CLOUD_DOC


class AsyncClientGeometry(_GeometryCore):
    """Mixed into :class:`~rgbdcast.aio.AsyncClient`: the same as :class:`ClientGeometry`,
    awaited; the cloud itself is computed on a worker thread, off the event loop."""

    async def _request(
        self, mtype: MessageType, timeout: float | None, payload: dict[str, Any] | None = None
    ) -> Any:
        raise NotImplementedError

    async def calibration(
        self, device_id: str, revision: str | None = None, timeout: float | None = None
    ) -> Calibration:
        """The device's calibration (see :meth:`ClientGeometry.calibration`)."""
        cal, ask = self._held(device_id, revision)
        if ask or cal is None:
            cal = (await self._fetch(device_id, (), timeout))[0]
        return cal

    async def _fetch(
        self, device_id: str, tables: Iterable[str], timeout: float | None
    ) -> tuple[Calibration, dict[str, np.ndarray]]:
        answer, parts = await self._request(
            MessageType.calibration, timeout, {"device": device_id, "tables": list(tables)}
        )
        return self._digest(device_id, answer, parts)

    async def calibration_table(
        self, device_id: str, name: str = TABLE_DEPTH_TO_CAMERA, timeout: float | None = None
    ) -> np.ndarray | None:
        cal = await self.calibration(device_id, timeout=timeout)
        if name not in cal.tables:
            return None
        table = self._held_table(cal, name)
        if table is None:
            fresh, tables = await self._fetch(device_id, [name], timeout)
            table = tables[name]
            self._keep_table(fresh, name, table)
        return table

    def subscribe_frameset(
        self,
        device_id: str,
        streams: Iterable[StreamKind | str] = (StreamKind.depth, StreamKind.color),
        *,
        queue_size: int = 2,
        lazy: bool = False,
    ) -> AsyncFramesetSubscription:
        """Several streams of one device matched by frameset id (``async for``); *lazy* as
        :meth:`ClientGeometry.subscribe_frameset`."""
        kinds = list(dict.fromkeys(StreamKind(s) for s in streams))
        decode = "lazy" if lazy else True
        subs = [
            self.subscribe(device_id, k, queue_size=queue_size, decode=decode)  # type: ignore[attr-defined]
            for k in kinds
        ]
        return AsyncFramesetSubscription(self, device_id, subs)

    async def point_cloud(
        self,
        frames: Mapping[Any, Frame] | Iterable[Frame],
        *,
        organized: bool = False,
        decimate: int = 1,
        z_range: tuple[float, float] | None = None,
        box: tuple[tuple[float, float, float], tuple[float, float, float]] | None = None,
        keep_uncolored: bool = False,
        timeout: float | None = None,
    ) -> PointCloud:
        depth, color = self._pair(frames)
        cal = await self.calibration(depth.device_id, depth.calibration, timeout)
        rays = None
        if TABLE_DEPTH_TO_CAMERA in cal.tables:
            rays = await self.calibration_table(depth.device_id, TABLE_DEPTH_TO_CAMERA, timeout)
        opts = {"organized": organized, "decimate": decimate, "z_range": z_range, "box": box}
        opts["keep_uncolored"] = keep_uncolored
        return await asyncio.to_thread(_cloud, depth, color, cal, rays, opts)

    point_cloud.__doc__ = _CLOUD_DOC
