"""``rgbdcast bench --suite zenoh``: fan-out through a Zenoh router next to direct ZeroMQ, a
stuck subscriber, two routers in a chain, and many cameras through one router.

Every process is started here: ``rgbdcast router`` processes, one ``rgbdcast serve --zenoh``
process (pre-rendered mock devices, so server CPU is the cost of serving), and subscriber
processes, each holding several subscriber sessions (a Zenoh client session, or a ZeroMQ
``Client``) that take frames without decoding and report fps, latency (capture to arrival,
one clock) and sequence gaps.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

import psutil

from .harness import free_port, section_head, stop_processes, write_section

__all__ = ["cmd_zenoh", "sub_main"]


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * (len(values) - 1)))]


def sub_main(argv: Sequence[str]) -> int:
    """A subscriber process: ``--sessions`` subscribers of one kind; prints one JSON line."""
    p = argparse.ArgumentParser(prog="rgbdcast.bench.zenoh sub")
    p.add_argument("--zenoh", metavar="ENDPOINT")
    p.add_argument("--zmq", metavar="ENDPOINT")
    p.add_argument("--key", default="rgbdcast/**")
    p.add_argument("--stream", default="depth")
    p.add_argument("--sessions", type=int, default=1)
    p.add_argument("--duration", type=float, default=5.0)
    p.add_argument("--warmup", type=float, default=2.0)
    p.add_argument("--stuck", action="store_true", help="block 1 s in every callback")
    a = p.parse_args(argv)
    start = time.monotonic() + a.warmup
    end = start + a.duration
    results: list[dict[str, Any]] = []
    lock = threading.Lock()

    def measure(take: Any) -> None:
        lat: list[float] = []
        per_key: dict[str, int] = {}
        gaps = nbytes = 0
        last: dict[str, int] = {}
        while time.monotonic() < end:
            try:
                enc = take()
            except TimeoutError:
                continue
            now = time.monotonic()
            h = enc.header
            key = f"{h.device_id}/{h.stream.value}"
            prev = last.get(key)
            if prev is not None and h.seq > prev + 1 and now >= start:
                gaps += h.seq - prev - 1
            last[key] = h.seq
            if now >= start:
                lat.append((time.time_ns() - h.host_time_ns) / 1e6)
                per_key[key] = per_key.get(key, 0) + 1
                nbytes += enc.nbytes + len(enc.raw_header)
        with lock:
            results.append(
                {
                    "frames": sum(per_key.values()),
                    "streams": len(per_key),
                    "fps_per_stream": (sum(per_key.values()) / max(1, len(per_key))) / a.duration,
                    "p50": _pct(lat, 0.5),
                    "p99": _pct(lat, 0.99),
                    "gaps": gaps,
                    "mbit_s": nbytes * 8 / 1e6 / a.duration,
                }
            )

    closers: list[Any] = []
    threads = []
    for _ in range(a.sessions):
        if a.zenoh:
            from ..zclient import ZenohClient

            zc = ZenohClient(connect=[a.zenoh])
            closers.append(zc)
            if a.stuck:
                # blocks its session's receiving for 1 s per sample, until the run ends
                zc.session.declare_subscriber(
                    a.key, lambda s: time.sleep(1.0) if time.monotonic() < end else None
                )
                continue
            sub = zc.subscribe(a.key, decode=False, queue_size=4)
            take = (lambda s: lambda: s.get(timeout=0.5))(sub)
        else:
            from ..client import Client

            client = Client(a.zmq)
            client.connect(timeout=10)
            closers.append(client)
            subs = [
                client.subscribe(d, a.stream, decode=False, queue_size=4) for d in client.devices
            ]
            take = (lambda ss: lambda: _take_any(ss))(subs)
        threads.append(threading.Thread(target=measure, args=(take,), daemon=True))
    for t in threads:
        t.start()
    if a.stuck:
        time.sleep(a.warmup + a.duration)
    for t in threads:
        t.join(a.warmup + a.duration + 30)
    for c in closers:
        c.close()
    print(json.dumps({"sessions": results}), flush=True)
    return 0


def _take_any(subs: list[Any]) -> Any:
    deadline = time.monotonic() + 0.5
    while time.monotonic() < deadline:
        for s in subs:
            with s._cond:
                if s._queue:
                    return s._queue.popleft()
        time.sleep(0.001)
    raise TimeoutError


def _py(*args: str) -> list[str]:
    return [sys.executable, "-m", *args]


class _Run:
    """Processes of one run, stopped together."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[str]] = []

    def start(self, cmd: list[str], wait_line: str | None = None) -> subprocess.Popen[str]:
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.procs.append(p)
        if wait_line is not None:
            assert p.stdout is not None
            line = p.stdout.readline()
            if wait_line not in line:
                err = p.stderr.read() if p.stderr else ""
                raise RuntimeError(f"{' '.join(cmd[:4])} did not start: {line} {err[-300:]}")
        return p

    def stop(self) -> None:
        stop_processes(self.procs)


def _free_ep() -> tuple[int, str]:
    port = free_port()
    return port, f"tcp/127.0.0.1:{port}"


def _measure(
    run: _Run,
    subs: list[list[str]],
    watch: dict[str, subprocess.Popen[str]],
    warmup: float,
    duration: float,
) -> dict[str, Any]:
    procs = [run.start(cmd) for cmd in subs]
    time.sleep(warmup + 0.5)
    ps = {name: psutil.Process(p.pid) for name, p in watch.items()}
    c0 = {n: p.cpu_times() for n, p in ps.items()}
    t0 = time.monotonic()
    time.sleep(max(0.5, duration - 1.0))
    c1 = {n: p.cpu_times() for n, p in ps.items()}
    dt = time.monotonic() - t0
    sessions = []
    for p in procs:
        out, err = p.communicate(timeout=warmup + duration + 60)
        lines = [ln for ln in out.splitlines() if ln.startswith("{")]
        if not lines:
            raise RuntimeError(f"bench subscriber failed: {err[-300:]}")
        sessions += json.loads(lines[-1])["sessions"]
    used = {n: c1[n].user + c1[n].system - c0[n].user - c0[n].system for n in ps}
    cpu = {n: max(0.0, t) / dt * 100 for n, t in used.items()}  # an idle process can read -0
    return {"sessions": sessions, "cpu": cpu}


def _summary(r: dict[str, Any]) -> dict[str, Any]:
    s = [x for x in r["sessions"] if x["frames"]]
    fps = [x["fps_per_stream"] for x in s]
    return {
        "n": len(r["sessions"]),
        "fps_min": min(fps) if fps else 0.0,
        "fps_mean": sum(fps) / len(fps) if fps else 0.0,
        "p50": _pct([x["p50"] for x in s], 0.5),
        "p99_worst": max((x["p99"] for x in s), default=float("nan")),
        "gaps": sum(x["gaps"] for x in s),
        "mbit_s": sum(x["mbit_s"] for x in s),
        "cpu": r["cpu"],
    }


def _server(
    run: _Run,
    router: str,
    mocks: int = 1,
    streams: str = "depth",
    size: str = "512x424",
    port: int = 0,
    extra: Sequence[str] = (),
) -> subprocess.Popen[str]:
    """``rgbdcast serve --zenoh`` of *mocks* pre-rendered mock devices, connected to *router*."""
    cmd = _py("rgbdcast", "serve", "--bind", "127.0.0.1", "--port", str(port or free_port()))
    cmd += ["--no-announce", "--no-web", "--quiet", "--streams", streams, "--prerender", "10"]
    cmd += ["--depth-size", size, "--color-size", "480x270", "--zenoh", "--zenoh-connect", router]
    return run.start(cmd + [*extra] + ["--mock"] * mocks, "serving")


def _router(run: _Run, listen: str, connect: str | None = None) -> subprocess.Popen[str]:
    cmd = _py("rgbdcast", "router", "--listen", listen)
    return run.start(cmd + (["--connect", connect] if connect else []), "router")


def cmd_zenoh(args: argparse.Namespace) -> None:
    try:
        import zenoh  # noqa: F401
    except ImportError:
        print("zenoh suite skipped: pip install 'rgbdcast[zenoh]'", flush=True)
        return
    dur, warm = args.duration / 2, 2.0
    rows: list[str] = []

    def row(label: str, s: dict[str, Any], cpu_names: Sequence[str]) -> None:
        cpu = ", ".join(f"{n} {s['cpu'][n]:.0f}%" for n in cpu_names)
        print(
            f"  {label}: {s['n']} subscribers, fps {s['fps_mean']:.1f} (min {s['fps_min']:.1f}), "
            f"p50 {s['p50']:.1f} ms, worst p99 {s['p99_worst']:.1f} ms, gaps {s['gaps']}, "
            f"{s['mbit_s']:.0f} Mbit/s received; {cpu}",
            flush=True,
        )
        rows.append(
            f"| {label} | {s['n']} | {s['fps_mean']:.1f} / {s['fps_min']:.1f} | "
            f"{s['p50']:.1f} ms | {s['p99_worst']:.1f} ms | {s['gaps']} | {s['mbit_s']:.0f} | "
            f"{cpu} |"
        )

    sub = _py("rgbdcast.bench.zenoh", "sub", "--duration", str(dur), "--warmup", str(warm))
    # 1. fan-out: one camera (depth, grad-zstd) to 8 and 32 subscribers, Zenoh via a router
    #    and ZeroMQ direct, in the same run (same server process)
    for n in (8, 32):
        run = _Run()
        try:
            _, rep = _free_ep()
            router = _router(run, rep)
            zport = free_port()
            server = _server(run, rep, 1, "depth", "512x424", zport)
            per = max(1, n // 8)
            procs = n // per
            for transport, flag, ep in (
                ("Zenoh via router", "--zenoh", rep),
                ("ZeroMQ direct", "--zmq", f"tcp://127.0.0.1:{zport}"),
            ):
                print(f"zenoh suite: 1 camera to {n} subscribers, {transport} ...", flush=True)
                r = _measure(
                    run,
                    [[*sub, flag, ep, "--sessions", str(per)]] * procs,
                    {"server": server, "router": router},
                    warm,
                    dur,
                )
                row(f"1 depth camera, {transport}", _summary(r), ("server", "router"))
        finally:
            run.stop()
    # 2. a stuck Zenoh subscriber (blocks 1 s per sample) beside 7 normal ones
    run = _Run()
    try:
        _, rep = _free_ep()
        router = _router(run, rep)
        server = _server(run, rep, 1, "depth", "512x424")
        print("zenoh suite: 7 subscribers beside a stuck one ...", flush=True)
        r = _measure(
            run,
            [[*sub, "--zenoh", rep, "--sessions", "7"], [*sub, "--zenoh", rep, "--stuck"]],
            {"server": server, "router": router},
            warm,
            dur,
        )
        row("1 depth camera, 7 subscribers beside a stuck one", _summary(r), ("server", "router"))
    finally:
        run.stop()
    # 2b. the same at 6 MB frames (raw 1080p color): 3 normal subscribers and a stuck one
    run = _Run()
    try:
        _, rep = _free_ep()
        router = _router(run, rep)
        big = ["--color-codec", "raw", "--color-size", "1920x1080"]
        server = _server(run, rep, 1, "color", extra=big)
        csub = [*sub, "--stream", "color"]
        watch = {"server": server, "router": router}
        normal = [*csub, "--zenoh", rep, "--sessions", "3"]
        for stuck in (False, True):
            label = "raw 1080p color (6 MB frames), 3 subscribers"
            label += " beside a stuck one" if stuck else ", none stuck"
            print(f"zenoh suite: {label} ...", flush=True)
            cmds = [normal, [*csub, "--zenoh", rep, "--stuck"]] if stuck else [normal]
            row(label, _summary(_measure(run, cmds, watch, warm, dur)), ("server", "router"))
    finally:
        run.stop()
    # 3. two routers in a chain: server -> router A -> router B -> 8 subscribers
    run = _Run()
    try:
        _, ep_a = _free_ep()
        _, ep_b = _free_ep()
        ra = _router(run, ep_a)
        rb = _router(run, ep_b, ep_a)
        server = _server(run, ep_a, 1, "depth", "512x424")
        print("zenoh suite: two routers in a chain, 8 subscribers ...", flush=True)
        r = _measure(
            run,
            [[*sub, "--zenoh", ep_b, "--sessions", "8"]],
            {"server": server, "router A": ra, "router B": rb},
            warm,
            dur,
        )
        row(
            "1 depth camera, two routers in a chain",
            _summary(r),
            ("server", "router A", "router B"),
        )
    finally:
        run.stop()
    # 4. many cameras through one router: color 480x270 JPEG + depth 256x212 each, one
    #    subscriber session per camera pair of streams
    many: list[tuple[int, dict[str, Any]]] = []
    for cams in (4, 8, 16):
        run = _Run()
        try:
            _, rep = _free_ep()
            router = _router(run, rep)
            server = _server(run, rep, cams, "color,depth", "256x212")
            print(f"zenoh suite: {cams} cameras through one router ...", flush=True)
            r = _measure(
                run,
                [[*sub, "--zenoh", rep, "--key", "rgbdcast/**", "--sessions", "1"]],
                {"server": server, "router": router},
                warm,
                dur,
            )
            s = _summary(r)
            many.append((cams, s))
            row(
                f"{cams} cameras (color 480x270 JPEG + depth 256x212) through one router",
                s,
                ("server", "router"),
            )
        finally:
            run.stop()
    if not args.write:
        return
    body = "\n".join(
        [
            *section_head(
                "## Zenoh: fan-out, a stuck subscriber, routers in a chain, many cameras"
            ),
            "Processes: `rgbdcast router` (a Python session in router mode), one `rgbdcast "
            "serve --zenoh` (mock devices pre-rendered; depth grad-zstd, color JPEG), and "
            "subscriber processes each holding several sessions (Zenoh client sessions through "
            "the router, or ZeroMQ `Client`s direct to the server) that take frames without "
            "decoding. fps is per stream and subscriber (mean / min); latency is capture to "
            "arrival on one clock (p50 over subscribers, worst p99); gaps are sequence numbers "
            "never received; CPU is percent of one core. Everything shares 2 cores, so the "
            "32-subscriber rows measure this machine's limit as much as the transport's.",
            "",
            "| run | subscribers | fps (mean / min) | latency p50 | worst p99 | gaps "
            "| Mbit/s received (all) | CPU |",
            "|---|---:|---:|---:|---:|---:|---:|---|",
            *rows,
        ]
    )
    write_section(args.write, "zenoh", body)


if __name__ == "__main__":
    if sys.argv[1:2] == ["sub"]:
        sys.exit(sub_main(sys.argv[2:]))
    print("usage: python -m rgbdcast.bench.zenoh sub [...]", file=sys.stderr)
    sys.exit(2)
