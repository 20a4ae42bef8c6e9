"""The receiving processes of the bench's end-to-end runs: ``sub`` (an rgbdcast subscriber, or
bare pyzmq SUB sockets, the ceiling) and ``viewer`` (a fast web viewer page). Each receives for
``--duration`` seconds after ``--warmup`` and prints one JSON line of figures.

Run as ``python -m rgbdcast.bench.receivers sub ENDPOINT [...]`` or ``... viewer URL [...]``.
"""

from __future__ import annotations

import argparse
import json
import struct
import sys
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

import psutil

from ..errors import UsageError

__all__ = ["main"]


def _consume(
    sub: Any, warmup_until: float, end: float, out: dict[str, Any], slow: bool = False
) -> None:
    """Take frames the way user code does; measure only after *warmup_until*."""
    lat: list[float] = []
    frames = dropped = 0
    last_seq = None
    while True:
        now = time.monotonic()
        if now >= end:
            break
        try:
            frame = sub.get(timeout=end - now)
        except (TimeoutError, UsageError):
            break
        received = time.time_ns()
        if time.monotonic() < warmup_until:
            last_seq = frame.seq
            continue
        frames += 1
        if slow:
            time.sleep(1.0)  # a consumer that takes one frame a second
        lat.append((received - frame.host_time_ns) / 1e6)
        if last_seq is not None and frame.seq > last_seq + 1:
            dropped += frame.seq - last_seq - 1
        last_seq = frame.seq
    out.update(frames=frames, dropped=dropped, latencies_ms=lat)


def _sub_main(argv: Sequence[str]) -> int:
    """One subscriber process: receive for --duration after --warmup, print one JSON line."""
    import threading

    from ..client import Client

    p = argparse.ArgumentParser(prog="rgbdcast.bench.receivers sub")
    p.add_argument("endpoint")
    p.add_argument("--streams", default="depth")
    p.add_argument("--duration", type=float, default=10.0)
    p.add_argument("--warmup", type=float, default=2.0)
    p.add_argument("--client", choices=["rgbdcast", "pyzmq"], default="rgbdcast")
    p.add_argument("--no-decode", action="store_true")
    p.add_argument("--slow", action="store_true")
    args = p.parse_args(argv)
    if args.client == "pyzmq":
        return _plain_sub(args)
    me = psutil.Process()
    with Client(args.endpoint, reconnect=False) as client:
        subs = [
            client.subscribe(dev, kind, decode=not args.no_decode)
            for dev in client.devices
            for kind in args.streams.split(",")
        ]
        t_start = time.monotonic()
        warm, end = t_start + args.warmup, t_start + args.warmup + args.duration
        results: list[dict[str, Any]] = [{} for _ in subs]
        threads = [
            threading.Thread(target=_consume, args=(s, warm, end, r, args.slow), daemon=True)
            for s, r in zip(subs, results, strict=False)
        ]
        for t in threads:
            t.start()
        time.sleep(max(0.0, warm - time.monotonic()))
        c0 = me.cpu_times()
        bytes0 = [s.stats.bytes for s in subs]
        for t in threads:
            t.join()
        c1 = me.cpu_times()
        span = args.duration
        out: dict[str, Any] = {
            "cpu_percent": (c1.user + c1.system - c0.user - c0.system) / span * 100,
            "slow": args.slow,
            "decoded": all(s.decode for s in subs),
            "streams": {},
        }
        for s, r, b0 in zip(subs, results, bytes0, strict=False):
            out["streams"][f"{s.device_id}/{s.kind.value}"] = {
                "frames": r["frames"],
                "fps": r["frames"] / span,
                "dropped": r["dropped"],
                "mbit_s": (s.stats.bytes - b0) * 8 / span / 1e6,
                "latencies_ms": r["latencies_ms"],
            }
    print(json.dumps(out), flush=True)
    return 0


def _plain_sub(args: argparse.Namespace) -> int:
    """The ceiling: a bare pyzmq SUB socket per stream, header parsed, payload as numpy, no
    threads, no checks. Same figures as the rgbdcast subscriber."""
    import json as _json

    import numpy as np
    import zmq

    from ..net.sockets import SUB_HWM

    me = psutil.Process()
    ctx = zmq.Context()
    req = ctx.socket(zmq.REQ)
    req.setsockopt(zmq.LINGER, 0)
    req.connect(args.endpoint)
    req.send(b"\x03")
    info = _json.loads(req.recv_multipart()[1])
    req.close()
    poller = zmq.Poller()
    socks: dict[Any, dict[str, Any]] = {}
    for dev in info["devices"]:
        for kind in args.streams.split(","):
            s = ctx.socket(zmq.SUB)
            s.setsockopt(zmq.LINGER, 0)
            s.setsockopt(zmq.RCVHWM, SUB_HWM)
            s.setsockopt(zmq.SUBSCRIBE, b"")
            s.connect(dev["endpoints"][kind])
            poller.register(s, zmq.POLLIN)
            socks[s] = {
                "name": f"{dev['id']}/{kind}",
                "lat": [],
                "frames": 0,
                "dropped": 0,
                "bytes": 0,
                "last": None,
            }
    t0 = time.monotonic()
    warm, end = t0 + args.warmup, t0 + args.warmup + args.duration
    c0 = None
    while time.monotonic() < end:
        if c0 is None and time.monotonic() >= warm:
            c0 = me.cpu_times()
        for s, _ in poller.poll(100):
            header, payload = s.recv_multipart(copy=False)
            now = time.time_ns()
            h = _json.loads(bytes(header.buffer[5:]))
            if h["codec"] == "raw":
                np.frombuffer(payload.buffer, h["dtype"]).reshape(h["shape"])
            st = socks[s]
            if time.monotonic() < warm:
                st["last"] = h["seq"]
                continue
            st["frames"] += 1
            st["bytes"] += len(header.buffer) + len(payload.buffer)
            st["lat"].append((now - h["t_host"]) / 1e6)
            if st["last"] is not None and h["seq"] > st["last"] + 1:
                st["dropped"] += h["seq"] - st["last"] - 1
            st["last"] = h["seq"]
    c1 = me.cpu_times()
    span = args.duration
    assert c0 is not None
    out: dict[str, Any] = {
        "cpu_percent": (c1.user + c1.system - c0.user - c0.system) / span * 100,
        "streams": {
            st["name"]: {
                "frames": st["frames"],
                "fps": st["frames"] / span,
                "dropped": st["dropped"],
                "mbit_s": st["bytes"] * 8 / span / 1e6,
                "latencies_ms": st["lat"],
            }
            for st in socks.values()
        },
    }
    for s in socks:
        s.close(0)
    ctx.term()
    print(json.dumps(out), flush=True)
    return 0


def _viewer_main(argv: Sequence[str]) -> int:
    """One viewer process: receive for --duration after --warmup, print one JSON line."""
    from websockets.sync.client import connect

    p = argparse.ArgumentParser(prog="rgbdcast.bench.receivers viewer")
    p.add_argument("url")
    p.add_argument("--duration", type=float, default=10.0)
    p.add_argument("--warmup", type=float, default=2.0)
    args = p.parse_args(argv)
    counts: Counter[str] = Counter()
    nbytes = 0
    deadline = time.monotonic() + 20.0
    while True:  # the server may still be starting
        try:
            ws = connect(args.url, max_size=None, open_timeout=5)
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    with ws:
        start = time.monotonic() + args.warmup
        end = start + args.duration
        while (now := time.monotonic()) < end:
            try:
                msg = ws.recv(timeout=end - now)
            except TimeoutError:
                break
            if isinstance(msg, str):
                continue
            (n,) = struct.unpack_from(">I", msg)
            head = json.loads(msg[4 : 4 + n])
            key = f"{head['device']}/{head['stream']}"
            ws.send(json.dumps({"type": "ack", "key": key}))
            if now >= start:
                counts[key] += 1
                nbytes += len(msg)
    fps = {k.split("/")[-1]: v / args.duration for k, v in counts.items()}
    print(json.dumps({"fps": fps, "mbit_s": nbytes * 8 / 1e6 / args.duration}), flush=True)
    return 0


def main(argv: Sequence[str]) -> int:
    if argv[:1] == ["sub"]:
        return _sub_main(argv[1:])
    if argv[:1] == ["viewer"]:
        return _viewer_main(argv[1:])
    print(
        "usage: python -m rgbdcast.bench.receivers sub ENDPOINT [...] | viewer URL [...]",
        file=sys.stderr,
    )
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
