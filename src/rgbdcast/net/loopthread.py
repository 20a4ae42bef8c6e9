"""An asyncio loop on a thread of its own, for the servers that are asyncio inside (the TCP
gateway, the web viewer). The loop is made, bound and run on that thread, so starting one works
from any caller, including one that already runs an event loop (Jupyter, an asyncio app)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from typing import TypeVar

__all__ = ["start_loop_thread"]

T = TypeVar("T")


def start_loop_thread(
    name: str, setup: Callable[[], Awaitable[T]]
) -> tuple[asyncio.AbstractEventLoop, threading.Thread, T]:
    """Run ``await setup()`` on a new loop on a new thread, then keep the loop running there.

    Returns the loop, the thread and what *setup* returned; re-raises what *setup* raised (the
    thread has then ended)."""
    loop = asyncio.new_event_loop()
    ready: Future[T] = Future()

    async def first() -> T:
        return await setup()

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            result = loop.run_until_complete(first())
        except BaseException as exc:
            loop.close()
            ready.set_exception(exc)
            return
        ready.set_result(result)
        loop.run_forever()

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    try:
        return loop, thread, ready.result()
    finally:
        if not ready.done() or ready.exception() is not None:
            thread.join()
