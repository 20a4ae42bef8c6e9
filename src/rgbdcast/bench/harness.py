"""The bench's harness: processes and ports, CPU over a span (whole and by OS thread), the
machine, and sections of BENCHMARKS.md. Every suite uses it; it uses no suite."""

from __future__ import annotations

import os
import platform
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psutil

from ..errors import UsageError

__all__ = [
    "SOURCE_THREAD_PREFIX",
    "CpuSpan",
    "command_line",
    "cpu_by_thread",
    "data_dir",
    "format_cpu_by_thread",
    "free_port",
    "machine_description",
    "median_cpu_by_thread",
    "pct",
    "section_head",
    "serve_process",
    "source_share",
    "stop_processes",
    "thread_times",
    "write_section",
]


def stop_processes(procs: Sequence[subprocess.Popen[str]]) -> None:
    """Terminate the processes of a run, then kill those that do not end within 10 s."""
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))]


SOURCE_THREAD_PREFIX = "src-"


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


def machine_description() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        text = Path("/proc/cpuinfo").read_text()
        m = re.search(r"model name\s*:\s*(.+)", text)
        if m:
            cpu = m.group(1).strip()
    except OSError:
        pass
    import zmq

    mem = psutil.virtual_memory().total / 2**30
    return (
        f"{cpu}, {psutil.cpu_count()} cores, {mem:.0f} GiB; {platform.system()} "
        f"{platform.release()}; Python {platform.python_version()}; pyzmq {zmq.__version__} "
        f"(libzmq {zmq.zmq_version()})"
    )


def section_head(heading: str) -> list[str]:
    """The first lines of every BENCHMARKS.md section: the heading, the machine and date, and
    the exact command that produced it."""
    return [
        heading,
        "",
        f"Measured {time.strftime('%Y-%m-%d')} on: {machine_description()}.",
        "",
        f"Command: `{command_line()}`",
        "",
    ]


def write_section(path: str | Path, key: str, body: str) -> None:
    """Replace (or append) the section marked ``<!-- bench:KEY -->`` in *path*."""
    file = Path(path)
    text = file.read_text() if file.exists() else "# Benchmarks\n"
    begin, end = f"<!-- bench:{key} -->", f"<!-- /bench:{key} -->"
    block = f"{begin}\n{body.rstrip()}\n{end}"
    if begin in text and end in text:
        text = text[: text.index(begin)] + block + text[text.index(end) + len(end) :]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    file.write_text(text)


def command_line() -> str:
    cmd = "rgbdcast bench"
    if sys.argv[1:2] == ["bench"]:
        cmd += " " + " ".join(sys.argv[2:])
    return cmd.strip()


def data_dir(arg: str | None) -> Path | None:
    for cand in (arg, os.environ.get("RGBDCAST_DATA"), "../shared/data/depth"):
        if cand and Path(cand).is_dir() and any(Path(cand).glob("*.npy")):
            return Path(cand)
    if arg:
        raise UsageError(f"no .npy depth frames in {arg}")
    return None


def serve_process(
    name: str, streams: str, extra: list[str], fps: float = 30.0
) -> tuple[subprocess.Popen[str], str]:
    """``rgbdcast serve`` on loopback as a child process; returns it and its endpoint."""
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "rgbdcast", "serve", "--no-announce", "--no-web"),
            *("--bind", "127.0.0.1", "--port", "0", "--streams", streams),
            *("--fps", f"{fps:g}", "--name", name, *extra),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    m = re.search(r"at (tcp://\S+)", proc.stdout.readline())
    if m is None:
        stop_processes([proc])
        raise RuntimeError(f"serve did not start: {proc.stderr.read() if proc.stderr else ''}")
    return proc, m.group(1)
