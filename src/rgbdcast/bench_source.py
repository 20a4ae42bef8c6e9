"""What the bench serves, and what the source itself costs.

``rgbdcast bench --source replay`` serves a recording instead of the pre-rendered mock: the
bench first records a few seconds of that mock (color as the server's JPEG, depth and infrared
raw) and the server replays it in a loop, so color is passed through as recorded rather than
encoded on the server, as with a camera that delivers MJPEG. Either way the device thread (the
source: drawing, or reading the file) is named ``src-<device>`` on Linux, and its CPU is kept
apart from the cost of serving.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil

from .errors import UsageError

__all__ = [
    "SOURCE_THREAD_PREFIX",
    "CpuSpan",
    "cpu_by_thread",
    "format_cpu_by_thread",
    "median_cpu_by_thread",
    "describe",
    "record_mock",
    "source_share",
    "thread_times",
]

SOURCE_THREAD_PREFIX = "src-"
RECORD = [sys.executable, "-m", "rgbdcast", "record"]


def thread_times(proc: psutil.Process) -> dict[int, tuple[str, float]]:
    """CPU seconds so far of each thread of *proc*, with its OS thread name ('' where unknown)."""
    out: dict[int, tuple[str, float]] = {}
    for t in proc.threads():
        try:
            name = Path(f"/proc/{proc.pid}/task/{t.id}/comm").read_text().strip()
        except OSError:
            name = ""
        out[t.id] = (name, t.user_time + t.system_time)
    return out


def cpu_by_thread(
    before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]], seconds: float
) -> dict[str, float]:
    """Percent of one core per OS thread name between two :func:`thread_times` snapshots, most
    first. Threads of one kind are summed under one name: ZeroMQ's I/O threads (``ZMQbg/IO/N``)
    as ``zmq-io``, the codec workers (``codec-cpuN``, ``codec-pool``) as ``codec-workers``."""
    out: dict[str, float] = {}
    for tid, (name, cpu) in after.items():
        if name.startswith("ZMQbg/IO/"):
            name = "zmq-io"
        elif name.startswith("codec-"):
            name = "codec-workers"
        share = (cpu - before.get(tid, (name, 0.0))[1]) / seconds * 100
        out[name or "?"] = out.get(name or "?", 0.0) + share
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


class CpuSpan:
    """One process's CPU between :meth:`start` and :meth:`stop`: percent of one core, whole and
    by OS thread (:func:`cpu_by_thread`)."""

    def __init__(self, proc: psutil.Process) -> None:
        self._proc = proc
        self._start: tuple[float, Any, dict[int, tuple[str, float]]] | None = None

    def _read(self) -> tuple[float, Any, dict[int, tuple[str, float]]]:
        return time.monotonic(), self._proc.cpu_times(), thread_times(self._proc)

    def start(self) -> None:
        self._start = self._read()

    def stop(self, side: str) -> dict[str, Any]:
        """``{side}_cpu_percent`` and ``{side}_threads`` since :meth:`start`; nothing if it was
        never started."""
        if self._start is None:
            return {}
        (t0, c0, th0), (t1, c1, th1) = self._start, self._read()
        return {
            f"{side}_cpu_percent": (c1.user + c1.system - c0.user - c0.system) / (t1 - t0) * 100,
            f"{side}_threads": cpu_by_thread(th0, th1, t1 - t0),
        }


def source_share(threads: dict[str, float]) -> float:
    """The source threads' (``src-<device>``) part of a :func:`cpu_by_thread` result."""
    return sum(v for name, v in threads.items() if name.startswith(SOURCE_THREAD_PREFIX))


def median_cpu_by_thread(shares: list[dict[str, float]]) -> dict[str, float]:
    """The median over runs of each thread name's share (0 in a run where it did not run)."""
    names = dict.fromkeys(n for d in shares for n in d)
    med = {n: statistics.median(d.get(n, 0.0) for d in shares) for n in names}
    return dict(sorted(med.items(), key=lambda kv: -kv[1]))


def format_cpu_by_thread(shares: dict[str, float], smallest: float = 0.5) -> str:
    """``pub-color-mock0 25.6%, zmq-io 5.2%, ...``; shares under *smallest* % summed as other."""
    shown = [f"{n} {v:.1f}%" for n, v in shares.items() if v >= smallest]
    rest = sum(v for v in shares.values() if v < smallest)
    return ", ".join(shown + ([f"other {rest:.1f}%"] if rest >= 0.05 else []))


def record_mock(out: Path, serve: list[str], endpoint: str, seconds: float) -> Path:
    """Record *seconds* of the server that the ``serve`` command line starts on *endpoint*."""
    server = subprocess.Popen(serve, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        if "serving" not in line:
            raise UsageError(f"bench server did not start: {line.strip()}")
        done = subprocess.run(
            [*RECORD, endpoint, "--out", str(out), "--duration", str(seconds)],
            capture_output=True,
            text=True,
            timeout=seconds + 60,
        )
        if done.returncode != 0 or not out.exists():
            raise UsageError(f"recording the bench source failed: {done.stderr.strip()[-300:]}")
    finally:
        from .bench import stop_processes  # bench imports this module

        stop_processes([server])
    return out


def describe(info: dict[str, Any]) -> str:
    """One sentence for BENCHMARKS.md on what was served."""
    if info.get("replay"):
        what = (
            f"a {info['seconds']:g} s recording of the pre-rendered mock"
            if info["seconds"]
            else f"the recording `{Path(info['replay']).name}`"
        )
        return (
            f"The server is its own process replaying {what} in a loop "
            "(`serve --replay FILE --loop`): color goes out as "
            "the recorded JPEG (passed through, not encoded on the server, as from a camera "
            "delivering MJPEG), depth and infrared are encoded from the recorded raw frames."
        )
    return (
        f"The server is its own process serving a mock device that pre-renders "
        f"{info['prerender']} framesets and loops them (its RSS includes that cache)."
    )
