"""The asyncio twin of :class:`rgbdcast.rig.Rig`: ``async with``, ``await get()``, ``async for``.

The matching is the blocking rig's (``Rig._try_match``); what differs is how it waits: one
:class:`~rgbdcast.aio.AsyncClient` per server, a collector task per device, and an event the
collectors set when a device's newest frameset arrives.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

from ._clientbase import until_closed_async
from .errors import RgbdcastError, UsageError
from .geometry.pointcloud import PointCloud
from .rig import Rig, RigFrameset, _Slot

__all__ = ["AsyncRig"]


class AsyncRig(Rig):
    """Matched framesets of several devices, for asyncio (see :class:`~rgbdcast.rig.Rig`)."""

    async def start(self) -> None:  # type: ignore[override]
        from .aio import AsyncClient

        self._new = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        try:
            fps = []
            for m in self.members:
                client = self._clients.get(m.endpoint)
                if client is None:
                    client = AsyncClient(m.endpoint, reconnect=True)
                    await client.connect(timeout=self.connect_timeout)
                    await client.clock_offset(timeout=self.connect_timeout)
                    self._clients[m.endpoint] = client
                fps.append(self._member_fps(client, m))
                self._slots[m] = _Slot(m, client)
            self._set_tolerance(fps)
            for slot in self._slots.values():
                slot.last_seen = time.monotonic()
                slot.sets = slot.client.subscribe_frameset(
                    slot.member.device, self.streams, lazy=True
                )
                self._tasks.append(asyncio.create_task(self._collect_async(slot)))
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:  # type: ignore[override]
        self._stop.set()
        for task in getattr(self, "_tasks", []):
            task.cancel()
        for task in getattr(self, "_tasks", []):
            with contextlib.suppress(asyncio.CancelledError, RgbdcastError):
                await task
        for slot in self._slots.values():
            if slot.sets is not None:
                await slot.sets.close()
        for client in self._clients.values():
            await client.disconnect()
        self._clients.clear()

    async def __aenter__(self) -> AsyncRig:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _collect_async(self, slot: _Slot) -> None:
        while not self._stop.is_set():
            try:
                frames = await slot.sets.get(timeout=0.2)
            except TimeoutError:
                continue
            except RgbdcastError as exc:
                slot.error = str(exc)
                return
            with self._cond:
                self._offer(slot, frames)
            self._new.set()

    async def get(self, timeout: float | None = None) -> RigFrameset:  # type: ignore[override]
        """The next rig frameset; ``TimeoutError`` after *timeout* s."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._stop.is_set():
            with self._cond:
                got = self._try_match()
            if got is not None:
                return got
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise TimeoutError(f"no rig frameset within {timeout} s")
            self._new.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._new.wait(), min(left, 0.1) if left else 0.1)
        raise UsageError("the rig is stopped")

    def __aiter__(self) -> AsyncIterator[RigFrameset]:
        return until_closed_async(self.get, self._stop.is_set)

    async def point_cloud(  # type: ignore[override]
        self,
        rs: RigFrameset,
        *,
        decimate: int = 1,
        box: Any = None,
        timeout: float | None = None,
    ) -> PointCloud:
        """The fused cloud of a rig frameset, in the rig frame (see :meth:`Rig.point_cloud`)."""
        if self.rig_file is None:
            raise UsageError("a fused cloud needs the rig file (AsyncRig(..., rig_file=...))")
        parts = []
        for member, frames in rs.frames.items():
            client = self._slots[member].client
            cloud = await client.point_cloud(frames, decimate=decimate, timeout=timeout)
            parts.append(self._place(member, cloud, box))
        return self._fused(parts)
