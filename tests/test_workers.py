"""The codec workers: parts run at once, results in order, errors propagate, CPUs pinned on
Linux (where the scheduler would otherwise queue a woken worker behind its waker) and named there
for the OS."""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable

import pytest

from rgbdcast.codecs import workers


def test_parts_come_back_in_order_and_the_caller_takes_a_share() -> None:
    seen: list[str] = []

    def work(i: int) -> int:
        seen.append(threading.current_thread().name)
        time.sleep(0.05)  # long enough for the workers to take theirs
        return i * i

    assert workers.run_parts(work, list(range(9))) == [i * i for i in range(9)]
    assert threading.current_thread().name in seen  # the caller worked too
    assert any(n.startswith("rgbdcast-pool-") for n in seen)
    assert workers.run_parts(work, []) == [] and workers.run_parts(work, [3]) == [9]


def test_parts_run_at_the_same_time() -> None:
    if (os.cpu_count() or 1) < 2:
        pytest.skip("needs two CPUs")
    barrier = threading.Barrier(2, timeout=5)

    def meet(_: int) -> bool:
        barrier.wait()  # raises BrokenBarrierError unless both parts run at once
        return True

    assert workers.run_parts(meet, [0, 1]) == [True, True]


def test_an_error_in_any_part_reaches_the_caller() -> None:
    def fail_on(bad: int) -> Callable[[int], int]:
        def work(i: int) -> int:
            if i == bad:
                raise ValueError(f"part {i}")
            return i

        return work

    for bad in (0, 1):
        with pytest.raises(ValueError, match=f"part {bad}"):
            workers.run_parts(fail_on(bad), [0, 1])
    assert workers.run_parts(lambda i: i, [0, 1]) == [0, 1]  # the workers survive


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="CPU pinning is Linux-only")
def test_on_linux_each_worker_is_pinned_to_its_own_cpu() -> None:
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("needs two CPUs")
    assert workers.pinned()
    before = os.sched_getaffinity(0)

    def where(_: int) -> tuple[str, set[int], str]:
        time.sleep(0.01)
        with open(f"/proc/self/task/{threading.get_native_id()}/comm") as f:
            os_name = f.read().strip()  # what top -H and the bench's CPU by thread show
        return threading.current_thread().name, os.sched_getaffinity(0), os_name

    got = workers.run_parts(where, [0, 1, 2, 3])
    pinned = {name: (cpus, os_name) for name, cpus, os_name in got if "-pool-cpu" in name}
    assert pinned and all(len(cpus) == 1 for cpus, _ in pinned.values())
    for name, (cpus, os_name) in pinned.items():
        assert (name, os_name) == (f"rgbdcast-pool-cpu{min(cpus)}", f"codec-cpu{min(cpus)}")
    assert os.sched_getaffinity(0) == before  # the calling thread is not pinned


def test_the_caller_takes_back_a_part_no_worker_has_started() -> None:
    # occupy every worker, then run two parts: the caller must not wait for a busy worker
    release = threading.Event()
    started = threading.Semaphore(0)

    def block(_: int) -> None:
        started.release()
        release.wait(10)

    holder = threading.Thread(target=workers.run_parts, args=(block, list(range(16))))
    holder.start()
    try:
        assert started.acquire(timeout=5)
        t0 = time.monotonic()
        names = workers.run_parts(lambda _: threading.current_thread().name, [0, 1])
        assert time.monotonic() - t0 < 2.0
        assert threading.current_thread().name in names
    finally:
        release.set()
        holder.join(10)
    assert workers.run_parts(lambda i: i + 1, [1, 2, 3]) == [2, 3, 4]
