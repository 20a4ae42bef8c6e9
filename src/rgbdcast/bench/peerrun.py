"""One peer run of the peers and gateway suites: a sender process and a receiver process (see
:mod:`rgbdcast.bench.peerprocs`), or an ``rgbdcast serve`` and a receiver, and the figures the
receiver prints, with both processes' CPU over its measured span."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

import psutil

from .e2erun import serve_command
from .harness import CpuSpan, free_port, stop_processes

__all__ = ["PACED_RUNS", "PEER_RUNS", "run_peer"]

# (label, transport, payload): payload is depth (raw uint16), color (raw BGR 1080p), jpeg
PEER_RUNS = [
    ("rgbdcast", "rgbdcast", "depth"),
    ("plain pyzmq PUB/SUB", "pyzmq", "depth"),
    ("imagezmq PUB/SUB", "imagezmq-pubsub", "depth"),
    ("imagezmq REQ/REP", "imagezmq-reqrep", "depth"),
    ("vidgear NetGear", "netgear", "depth"),
    ("rgbdcast", "rgbdcast", "color"),
    ("plain pyzmq PUB/SUB", "pyzmq", "color"),
    ("imagezmq PUB/SUB", "imagezmq-pubsub", "color"),
    ("imagezmq REQ/REP", "imagezmq-reqrep", "color"),
    ("vidgear NetGear", "netgear", "color"),
    ("rgbdcast (jpeg q85)", "rgbdcast", "jpeg"),
    ("imagezmq PUB/SUB + simplejpeg q85", "imagezmq-pubsub", "jpeg"),
    ("imagezmq REQ/REP + simplejpeg q85", "imagezmq-reqrep", "jpeg"),
]


# The same frames at a camera's pace: 1080p color as JPEG at 30 fps to one decoding receiver.
# (label, transport, extra ``serve`` arguments for rgbdcast)
PACED_RUNS: list[tuple[str, str, list[str]]] = [
    ("rgbdcast (default: 2 strips)", "rgbdcast", []),
    ("rgbdcast --color-strips 1", "rgbdcast", ["--color-strips", "1"]),
    ("imagezmq REQ/REP + simplejpeg", "imagezmq-reqrep", []),
    ("imagezmq PUB/SUB + simplejpeg", "imagezmq-pubsub", []),
]


def run_peer(
    transport: str,
    payload: str,
    duration: float = 5.0,
    warmup: float = 1.0,
    fps: int = 4000,
    pace: float = 0.0,
    serve_extra: list[str] | None = None,
) -> dict[str, Any]:
    """One run; returns received fps and latency percentiles. Peers send as fast as they can,
    or at *pace* frames/s; rgbdcast's mock runs at *pace* if given, else at *fps*."""
    port = free_port()
    py = sys.executable
    procs: list[subprocess.Popen[str]] = []
    with tempfile.TemporaryFile("w+") as errors:  # the receiver's stderr, for its failure
        try:
            recv_port = port
            if transport in ("rgbdcast", "gateway"):
                kind = "depth" if payload == "depth" else "color"
                codec = {"depth": "raw", "color": "raw", "jpeg": "jpeg"}[payload]
                gateway_args: list[str] = []
                if transport == "gateway":
                    recv_port = free_port()
                    gateway_args = ["--tcp-gateway", f"127.0.0.1:{recv_port}"]
                sender = subprocess.Popen(
                    serve_command(
                        port,
                        kind,
                        pace or fps,
                        duration + warmup + 30,
                        prerender=10,
                        extra=[
                            f"--{kind}-codec",
                            codec,
                            "--color-quality",
                            "85",
                            *gateway_args,
                            *(serve_extra or []),
                        ],
                    ),
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
                procs.append(sender)
                assert sender.stdout is not None
                sender.stdout.readline()
            recv = subprocess.Popen(
                [
                    py,
                    "-m",
                    "rgbdcast.bench.peerprocs",
                    "recv",
                    transport,
                    payload,
                    str(recv_port),
                    str(duration),
                    str(warmup),
                ],
                stdout=subprocess.PIPE,
                stderr=errors,
                text=True,
            )
            procs.append(recv)
            if transport not in ("rgbdcast", "gateway"):
                time.sleep(0.5)
                procs.append(
                    subprocess.Popen(
                        [
                            py,
                            "-m",
                            "rgbdcast.bench.peerprocs",
                            "send",
                            transport,
                            payload,
                            str(port),
                            str(duration + warmup + 5),
                            "--pace",
                            str(pace),
                        ],
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.PIPE,
                        text=True,
                    )
                )
            sender = procs[0] if transport in ("rgbdcast", "gateway") else procs[-1]
            figures = _read_receiver(recv, sender, duration + warmup + 60)
            if not figures:
                errors.seek(0)
                raise RuntimeError(f"{transport} receiver failed: {errors.read().strip()[-400:]}")
            return figures
        finally:
            stop_processes(procs)


def _read_receiver(
    recv: subprocess.Popen[str], sender: subprocess.Popen[str], timeout: float
) -> dict[str, Any]:
    """The receiver's figures, plus the sender's CPU over the receiver's measured span (it says
    ``measuring`` when the span starts and prints its figures when it ends)."""
    assert recv.stdout is not None
    watchdog = threading.Timer(timeout, recv.kill)
    watchdog.daemon = True  # never what keeps the bench from exiting
    watchdog.start()
    try:
        span = CpuSpan(psutil.Process(sender.pid))
    except psutil.Error:
        span = None  # the sender is gone already: the receiver will say why it got nothing
    figures: dict[str, Any] = {}
    try:
        for line in recv.stdout:
            try:
                if line.startswith("measuring") and span is not None:
                    span.start()
                elif line.startswith("{"):
                    figures = json.loads(line)
                    figures.update(span.stop("sender") if span is not None else {})
            except psutil.Error:
                span = None
        recv.wait()
    finally:
        watchdog.cancel()
    return figures
