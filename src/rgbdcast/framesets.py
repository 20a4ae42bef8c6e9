"""Frames of one device that belong together: matched by frameset id (client side).

How this works: a device gives every frame it captured together one frameset id (Kinect v2: the
frames of one multi-source frame; RealSense: one frameset; the mock: one render). Each stream
arrives on its own subscription, so a :class:`FramesetSubscription` merges them (the decisions
are :class:`FramesetMatcher`'s, shared with the asyncio twin): it takes the
oldest frame of each stream and, while the ids differ, drops the older ones (counted in
``unmatched``) until every stream shows the same id. Newest-wins queues mean a slow reader skips
whole framesets, never pairs frames of two.

What "together" means is the device's: a Kinect v2 exposes color and depth independently, so
the two frames of one frameset can be up to one frame period apart (compare ``device_time_ns``);
nothing here moves a frame in time.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

from ._clientbase import until_closed, until_closed_async
from .errors import UsageError
from .frames import Frame, StreamKind

__all__ = ["AsyncFramesetSubscription", "FramesetMatcher", "FramesetSubscription"]


class FramesetMatcher:
    """The merge, without any waiting: offer it frames of the streams it asks for
    (:meth:`missing`); it hands back a whole frameset when every stream shows one id."""

    def __init__(self, kinds: Sequence[StreamKind]) -> None:
        if len(kinds) < 2:
            raise UsageError("a frameset needs at least two streams")
        self.kinds = list(kinds)
        self._held: dict[StreamKind, Frame] = {}
        self._last: int | None = None
        self.matched = 0
        """Framesets handed out."""
        self.unmatched: dict[str, int] = {k.value: 0 for k in kinds}
        """Per stream, frames dropped because no frame of the other streams had their id."""

    def missing(self) -> list[StreamKind]:
        return [k for k in self.kinds if k not in self._held]

    def offer(self, frame: Frame) -> dict[StreamKind, Frame] | None:
        self._held[frame.kind] = frame
        if self.missing():
            return None
        ids = {f.frameset_id for f in self._held.values()}
        if len(ids) > 1 and self._last is not None and min(ids) <= self._last:
            # ids started again (the device restarted): the frames of before go
            for kind, held in list(self._held.items()):
                if held.frameset_id > self._last:
                    self._drop(kind)
            self._last = None
            if self.missing():
                return None
            ids = {f.frameset_id for f in self._held.values()}
        if len(ids) == 1:
            out, self._held = self._held, {}
            self.matched += 1
            self._last = ids.pop()
            return out
        newest = max(ids)
        for kind, held in list(self._held.items()):
            if held.frameset_id < newest:  # its partners are gone: never matched
                self._drop(kind)
        return None

    def _drop(self, kind: StreamKind) -> None:
        del self._held[kind]
        self.unmatched[kind.value] += 1


class FramesetSubscription:
    """Matched framesets of one device: ``get()`` returns ``{StreamKind: Frame}``."""

    def __init__(self, client: Any, device_id: str, subs: Sequence[Any]) -> None:
        self.device_id = device_id
        self._client = client
        self._subs = {s.kind: s for s in subs}
        self._matcher = FramesetMatcher([s.kind for s in subs])

    @property
    def kinds(self) -> list[StreamKind]:
        return list(self._subs)

    @property
    def matched(self) -> int:
        """Framesets handed out."""
        return self._matcher.matched

    @property
    def unmatched(self) -> dict[str, int]:
        """Per stream, frames dropped because no frame of the other streams had their id."""
        return self._matcher.unmatched

    def snapshots(self) -> dict[StreamKind, Any]:
        """Each stream's figures now (fps, drops, latency, bandwidth): ``Subscription.snapshot``."""
        return {kind: sub.snapshot() for kind, sub in self._subs.items()}

    def get(self, timeout: float | None = None) -> dict[StreamKind, Frame]:
        """The next complete frameset; ``TimeoutError`` after *timeout* s."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            for kind in self._matcher.missing():
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                out = self._matcher.offer(self._subs[kind].get(timeout=left))
                if out is not None:
                    return out

    def __iter__(self) -> Iterator[dict[StreamKind, Frame]]:
        return until_closed(self.get, self._closed)

    def _closed(self) -> bool:
        return any(s.closed for s in self._subs.values())

    def close(self) -> None:
        for sub in self._subs.values():
            sub.close()

    def __enter__(self) -> FramesetSubscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        kinds = ",".join(k.value for k in self.kinds)
        return f"<FramesetSubscription {self.device_id}/{kinds} matched={self.matched}>"


class AsyncFramesetSubscription:
    """:class:`FramesetSubscription` for :class:`~rgbdcast.aio.AsyncClient`:
    ``await get()``, ``async for``, ``async with``."""

    def __init__(self, client: Any, device_id: str, subs: Sequence[Any]) -> None:
        self.device_id = device_id
        self._subs = {s.kind: s for s in subs}
        self._matcher = FramesetMatcher([s.kind for s in subs])

    def snapshots(self) -> dict[StreamKind, Any]:
        """Each stream's figures now (fps, drops, latency, bandwidth)."""
        return {kind: sub.snapshot() for kind, sub in self._subs.items()}

    @property
    def matched(self) -> int:
        return self._matcher.matched

    @property
    def unmatched(self) -> dict[str, int]:
        return self._matcher.unmatched

    async def get(self, timeout: float | None = None) -> dict[StreamKind, Frame]:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            for kind in self._matcher.missing():
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                out = self._matcher.offer(await self._subs[kind].get(timeout=left))
                if out is not None:
                    return out

    def __aiter__(self) -> AsyncIterator[dict[StreamKind, Frame]]:
        return until_closed_async(self.get, lambda: any(s.closed for s in self._subs.values()))

    async def close(self) -> None:
        for sub in self._subs.values():
            await sub.close()

    async def __aenter__(self) -> AsyncFramesetSubscription:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
