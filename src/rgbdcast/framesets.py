"""Frames of one device that belong together: matched by frameset id (client side).

How this works: a device gives every frame it captured together one frameset id (Kinect v2: the
frames of one multi-source frame; RealSense: one frameset; the mock: one render). Each stream
arrives on its own subscription, so a :class:`FramesetSubscription` merges them: it takes the
oldest frame of each stream and, while the ids differ, drops the older ones (counted in
``unmatched``) until every stream shows the same id. Newest-wins queues mean a slow reader skips
whole framesets, never pairs frames of two.

What "together" means is the device's: a Kinect v2 exposes color and depth independently, so
the two frames of one frameset can be up to one frame period apart (compare ``device_time_ns``);
nothing here moves a frame in time.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from typing import Any

from .errors import UsageError
from .frames import Frame, StreamKind

__all__ = ["FramesetSubscription"]


class FramesetSubscription:
    """Matched framesets of one device: ``get()`` returns ``{StreamKind: Frame}``."""

    def __init__(self, client: Any, device_id: str, subs: Sequence[Any]) -> None:
        if len(subs) < 2:
            raise UsageError("a frameset needs at least two streams")
        self.device_id = device_id
        self._client = client
        self._subs = list(subs)
        self._held: dict[StreamKind, Frame] = {}
        self._last: int | None = None
        self.matched = 0
        """Framesets handed out."""
        self.unmatched: dict[str, int] = {s.kind.value: 0 for s in subs}
        """Per stream, frames dropped because no frame of the other streams had their id."""

    @property
    def kinds(self) -> list[StreamKind]:
        return [s.kind for s in self._subs]

    def get(self, timeout: float | None = None) -> dict[StreamKind, Frame]:
        """The next complete frameset; ``TimeoutError`` after *timeout* s."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            for sub in self._subs:
                if sub.kind not in self._held:
                    left = None if deadline is None else max(0.0, deadline - time.monotonic())
                    self._held[sub.kind] = sub.get(timeout=left)
            ids = {f.frameset_id for f in self._held.values()}
            if len(ids) == 1:
                out, self._held = self._held, {}
                self.matched += 1
                self._last = ids.pop()
                return out
            if self._last is not None and min(ids) <= self._last:
                # ids started again (the device restarted): the frames of before go
                for kind, frame in list(self._held.items()):
                    if frame.frameset_id > self._last:
                        self._drop(kind)
                self._last = None
                continue
            newest = max(ids)
            for kind, frame in list(self._held.items()):
                if frame.frameset_id < newest:  # its partners are gone: never matched
                    self._drop(kind)

    def _drop(self, kind: StreamKind) -> None:
        del self._held[kind]
        self.unmatched[kind.value] += 1

    def __iter__(self) -> Iterator[dict[StreamKind, Frame]]:
        while not any(s.closed for s in self._subs):
            try:
                yield self.get(timeout=0.5)
            except TimeoutError:
                continue
            except UsageError:
                return

    def close(self) -> None:
        for sub in self._subs:
            sub.close()

    def __enter__(self) -> FramesetSubscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        kinds = ",".join(k.value for k in self.kinds)
        return f"<FramesetSubscription {self.device_id}/{kinds} matched={self.matched}>"
