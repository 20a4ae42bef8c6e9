"""A latest-value slot: the hand-over between a producer thread and a consumer thread.

``put`` never blocks: a value nobody took yet is replaced and counted in ``dropped``. ``waited``
counts the values the consumer had to wait for (it found the slot empty): near ``put_count -
dropped`` means the producer sets the pace, near 0 that the consumer does.
"""

from __future__ import annotations

import threading
from typing import Generic, TypeVar

T = TypeVar("T")

__all__ = ["LatestSlot"]


class LatestSlot(Generic[T]):
    """Holds at most one value; the newest wins."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: T | None = None
        self._closed = False
        self.put_count = 0
        self.dropped = 0
        self.waited = 0

    def put(self, item: T) -> None:
        with self._cond:
            self.put_count += 1
            if self._item is not None:
                self.dropped += 1
            self._item = item
            self._cond.notify()

    def take(self, timeout: float | None = None) -> T | None:
        """The value, waiting up to *timeout* seconds for one; None on timeout or close."""
        with self._cond:
            waited = self._item is None and not self._closed
            if waited:
                self._cond.wait(timeout)
            item, self._item = self._item, None
            if waited and item is not None:
                self.waited += 1
            return item

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed
