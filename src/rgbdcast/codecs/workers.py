"""Process-wide workers for codecs that split one frame into parts (JPEG bands).

``run_parts(fn, parts)`` runs ``fn`` on every part and returns the results in order; the calling
thread takes its share itself. The point is latency, so the parts must really run at once:

- On Linux each worker is pinned to one CPU the process may use, and the parts go to the workers
  of the CPUs *other* than the caller's. Unpinned, a worker woken by a thread that then keeps
  its CPU busy is often queued on that same CPU (the scheduler's wake-affine placement, and on
  virtual machines an idle vCPU that is not offered), so two 1080p JPEG bands took as long as
  one frame at 30 fps here; pinned, half as long (BENCHMARKS.md). ``RGBDCAST_PIN_WORKERS=0``
  turns pinning off.
- Elsewhere (Windows, macOS) a plain thread pool does the same without pinning.

Workers are daemon threads named ``rgbdcast-pool-*`` (``codec-cpu<N>`` or ``codec-pool`` in
the OS: ``top -H``), made on first use and kept for the
process's life. Codec functions run here must release the GIL to gain anything.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from .._osthreads import name_native_thread

__all__ = ["MAX_WORKERS", "pinned", "run_parts"]

T = TypeVar("T")
R = TypeVar("R")
MAX_WORKERS = 8

_lock = threading.Lock()
_state: _Pinned | ThreadPoolExecutor | None = None


def _sched_getcpu() -> Callable[[], int] | None:
    if not hasattr(os, "sched_setaffinity") or os.environ.get("RGBDCAST_PIN_WORKERS") == "0":
        return None
    try:
        fn = ctypes.CDLL(None).sched_getcpu
    except (OSError, AttributeError):
        return None
    fn.restype = ctypes.c_int
    fn.argtypes = []
    return fn if fn() >= 0 else None


class _Job:
    """One part, run exactly once: by the worker it was given to, or, if that worker has not
    started it by the time the caller is done with its own parts, by the caller."""

    __slots__ = ("arg", "claim", "done", "error", "fn", "result")

    def __init__(self, fn: Callable[[Any], Any], arg: Any) -> None:
        self.fn, self.arg = fn, arg
        self.claim = threading.Lock()
        self.done = threading.Event()
        self.result: Any = None
        self.error: BaseException | None = None

    def run(self) -> None:
        if not self.claim.acquire(blocking=False):
            return  # taken already
        try:
            self.result = self.fn(self.arg)
        except BaseException as exc:
            self.error = exc
        finally:
            self.done.set()

    def outcome(self) -> Any:
        self.run()  # nobody started it yet: do it here rather than wait for a busy CPU
        self.done.wait()
        if self.error is not None:
            raise self.error
        return self.result


class _Worker:
    def __init__(self, cpu: int) -> None:
        self.cpu = cpu
        self.jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        t = threading.Thread(target=self._run, name=f"rgbdcast-pool-cpu{cpu}", daemon=True)
        t.start()

    def _run(self) -> None:
        name_native_thread(f"codec-cpu{self.cpu}")  # top -H, and the bench's CPU by thread
        with contextlib.suppress(OSError):  # a cpuset forbids it now: run unpinned
            os.sched_setaffinity(0, {self.cpu})
        while True:
            self.jobs.get().run()


class _Pinned:
    def __init__(self, getcpu: Callable[[], int], cpus: list[int]) -> None:
        self.getcpu = getcpu
        self.cpus = cpus
        self.workers = {cpu: _Worker(cpu) for cpu in cpus}

    def submit(self, jobs: list[_Job]) -> list[_Job]:
        """Hand *jobs* to the workers of other CPUs; returns the caller's own share."""
        me = self.getcpu()
        start = self.cpus.index(me) if me in self.workers else 0
        mine = []
        for i, job in enumerate(jobs):
            cpu = self.cpus[(start + i) % len(self.cpus)]
            if cpu == me or (me not in self.workers and i == 0):
                mine.append(job)
            else:
                self.workers[cpu].jobs.put(job)
        return mine


def _pool() -> _Pinned | ThreadPoolExecutor:
    global _state
    with _lock:
        if _state is None:
            getcpu = _sched_getcpu()
            cpus = sorted(os.sched_getaffinity(0))[:MAX_WORKERS] if getcpu else []
            if getcpu is not None and len(cpus) >= 2:
                _state = _Pinned(getcpu, cpus)
            else:
                n = max(2, min(4, os.cpu_count() or 2))
                _state = ThreadPoolExecutor(
                    n,
                    "rgbdcast-pool-codec",
                    initializer=name_native_thread,
                    initargs=("codec-pool",),
                )
        return _state


def pinned() -> bool:
    """True when parts run on CPU-pinned workers (Linux, 2+ CPUs, not turned off)."""
    return isinstance(_pool(), _Pinned)


def run_parts(fn: Callable[[T], R], parts: Sequence[T]) -> list[R]:
    """``[fn(p) for p in parts]``, at once on several CPUs; exceptions propagate. The caller
    works too, and takes back any part no worker has begun when it is done with its own, so a
    busy CPU delays nothing beyond the serial time."""
    if len(parts) <= 1:
        return [fn(p) for p in parts]
    jobs = [_Job(fn, p) for p in parts]
    pool = _pool()
    if isinstance(pool, _Pinned):
        mine = pool.submit(jobs)
    else:
        for job in jobs[1:]:
            pool.submit(job.run)
        mine = jobs[:1]
    for job in mine:
        job.run()
    return [job.outcome() for job in jobs]
