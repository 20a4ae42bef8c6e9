"""The sender and receiver processes of the peers and gateway suites: frames as fast as possible
(or paced), over rgbdcast and over the tools users would otherwise pick (plain pyzmq PUB/SUB,
imagezmq REQ/REP and PUB/SUB, vidgear's NetGear), all on the same mock frames. Run as
``python -m rgbdcast.bench.peerprocs send|recv TRANSPORT PAYLOAD PORT DURATION [WARMUP]``.

The send time travels in the first 8 bytes of each raw frame (imagezmq's message string for JPEG);
rgbdcast's is the frame header's capture time. Needs ``pip install 'rgbdcast[bench]'``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import numpy as np
import psutil

from .harness import CpuSpan

__all__ = ["main"]

_NETGEAR_RAW: dict[str, Any] = {"jpeg_compression": False}


def _frames(payload: str) -> list[np.ndarray]:
    from ..devices.mock import MockDevice

    kind = "depth" if payload == "depth" else "color"
    dev = MockDevice("peer", streams=[kind])
    return [np.ascontiguousarray(dev.render(i)[0].array) for i in range(10)]


def _stamp(frame: np.ndarray) -> np.ndarray:
    out = frame.copy()
    out.reshape(-1).view(np.uint8)[:8] = np.frombuffer(np.int64(time.time_ns()).tobytes(), np.uint8)
    return out


def _stamp_of(frame: np.ndarray) -> int:
    return int(
        np.frombuffer(
            np.ascontiguousarray(frame).reshape(-1).view(np.uint8)[:8].tobytes(), np.int64
        )[0]
    )


def _pacer(fps: float) -> Any:
    """Sleeps until the next frame period (no-op when *fps* is 0: as fast as possible)."""
    period, start = (1.0 / fps if fps else 0.0), 0.0
    count = 0

    def wait() -> None:
        nonlocal count, start
        count += 1
        if count == 1:
            start = time.monotonic()
        elif period:
            time.sleep(max(0.0, start + count * period - time.monotonic()))

    return wait


def _send(transport: str, payload: str, port: int, duration: float, pace: float = 0.0) -> None:
    import simplejpeg
    import zmq

    frames = _frames(payload)
    end = time.monotonic() + duration
    ep = f"tcp://127.0.0.1:{port}"
    i = 0
    wait = _pacer(pace)
    if transport == "pyzmq":
        sock: zmq.Socket[Any] = zmq.Context.instance().socket(zmq.PUB)
        sock.bind(ep)
        time.sleep(0.5)
        while time.monotonic() < end:
            sock.send(_stamp(frames[i % len(frames)]).data)
            i += 1
            wait()
        sock.close(0)
    elif transport.startswith("imagezmq"):
        import imagezmq

        reqrep = transport.endswith("reqrep")
        sender = imagezmq.ImageSender(
            connect_to=ep if reqrep else f"tcp://*:{port}", REQ_REP=reqrep
        )
        time.sleep(0.5)
        while time.monotonic() < end:
            frame = frames[i % len(frames)]
            if payload == "jpeg":  # stamped before encoding, as rgbdcast's capture time is
                sent = time.time_ns()
                jpg = simplejpeg.encode_jpeg(
                    frame, quality=85, colorspace="BGR", colorsubsampling="420"
                )
                sender.send_jpg(str(sent), jpg)
            else:
                sender.send_image("f", _stamp(frame))
            i += 1
            wait()
        sender.close()
    elif transport == "netgear":
        from vidgear.gears import NetGear

        ng = NetGear(address="127.0.0.1", port=str(port), logging=False, **_NETGEAR_RAW)
        while time.monotonic() < end:
            ng.send(_stamp(frames[i % len(frames)]))
            i += 1
            wait()
        ng.close()


def _recv(
    transport: str, payload: str, port: int, duration: float, warmup: float
) -> dict[str, Any]:
    import simplejpeg
    import zmq

    ep = f"tcp://127.0.0.1:{port}"
    extra: dict[str, float] = {}
    cpu: dict[str, Any] = {}
    lat: list[float] = []
    frames = 0
    t_first = None
    start_measure = end = float("inf")

    own = CpuSpan(psutil.Process())

    def note(sent_ns: int) -> bool:
        nonlocal frames, t_first, start_measure, end
        now = time.monotonic()
        if t_first is None:
            t_first = now
            start_measure, end = now + warmup, now + warmup + duration
        if now >= start_measure:
            if not frames:
                own.start()
                print("measuring", flush=True)  # the parent reads the sender's CPU from here
            frames += 1
            lat.append((time.time_ns() - sent_ns) / 1e6)
        if now >= end and "receiver_threads" not in cpu:
            cpu.update(own.stop("receiver"))
        return now < end

    if transport == "gateway":
        import socket
        import struct

        from ..testing import recv_exact

        sock_t = socket.create_connection(("127.0.0.1", port), timeout=20)

        def exact(n: int) -> bytes:
            return recv_exact(sock_t, n)

        stream = "depth" if payload == "depth" else "color"
        while True:
            sock_t.sendall(f"GET mock0 {stream} raw\n".encode())
            (n,) = struct.unpack(">I", exact(4))
            h = json.loads(exact(n))
            np.frombuffer(exact(h["size"]), h["dtype"]).reshape(h["shape"])
            if not note(h["t_host"]):
                break
        sock_t.close()
    if transport == "rgbdcast":
        from ..client import Client

        kind = "depth" if payload == "depth" else "color"
        with Client(ep) as client:
            sub = client.subscribe("mock0", kind)
            before: tuple[float, dict[str, Any], int, int] | None = None
            while True:
                f = sub.get(timeout=20)
                if before is None and time.monotonic() >= start_measure:
                    stats = client.server_stats()["streams"][f"mock0/{kind}"]
                    before = time.monotonic(), stats, sub.stats.frames, sub.queue_dropped
                if not note(f.host_time_ns):
                    break
            stats = client.server_stats()["streams"][f"mock0/{kind}"]
            after = time.monotonic(), stats, sub.stats.frames, sub.queue_dropped
        if before is not None:
            from ..net.publisher import stream_rates

            span = after[0] - before[0]
            extra = stream_rates(before[1], after[1], span)
            extra["client_fps"] = (after[2] - before[2]) / span  # checked by the I/O thread
            extra["queue_drop_fps"] = (after[3] - before[3]) / span  # never reached get()
    elif transport == "pyzmq":
        sock: zmq.Socket[Any] = zmq.Context.instance().socket(zmq.SUB)
        sock.setsockopt(zmq.SUBSCRIBE, b"")
        sock.connect(ep)
        shape = (424, 512) if payload == "depth" else (1080, 1920, 3)
        dtype = np.uint16 if payload == "depth" else np.uint8
        while True:
            buf = sock.recv(copy=False)
            arr = np.frombuffer(buf.buffer, dtype).reshape(shape)
            if not note(_stamp_of(arr)):
                break
        sock.close(0)
    elif transport.startswith("imagezmq"):
        import imagezmq

        reqrep = transport.endswith("reqrep")
        hub = imagezmq.ImageHub(open_port=f"tcp://*:{port}" if reqrep else ep, REQ_REP=reqrep)
        while True:
            if payload == "jpeg":
                msg, jpg = hub.recv_jpg()
                simplejpeg.decode_jpeg(jpg, colorspace="BGR", fastdct=True, fastupsample=True)
                ok = note(int(msg))
            else:
                _msg, arr = hub.recv_image()
                ok = note(_stamp_of(arr))
            if reqrep:
                hub.send_reply(b"OK")
            if not ok:
                break
        hub.close()
    elif transport == "netgear":
        from vidgear.gears import NetGear

        ng = NetGear(
            address="127.0.0.1",
            port=str(port),
            receive_mode=True,
            logging=False,
            **_NETGEAR_RAW,
        )
        while True:
            got = ng.recv()
            if got is None or not note(_stamp_of(got)):
                break
        ng.close()
    lat.sort()

    def pick(q: float) -> float:
        return lat[min(len(lat) - 1, int(q * (len(lat) - 1)))] if lat else float("nan")

    return {
        "frames": frames,
        "fps": frames / duration,
        "p50": pick(0.5),
        "p99": pick(0.99),
        **extra,
        **cpu,
    }


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m rgbdcast.bench.peerprocs")
    p.add_argument("role", choices=["send", "recv"])
    p.add_argument("transport")
    p.add_argument("payload", choices=["depth", "color", "jpeg"])
    p.add_argument("port", type=int)
    p.add_argument("duration", type=float)
    p.add_argument("warmup", type=float, nargs="?", default=1.0)
    p.add_argument("--pace", type=float, default=0.0, help="frames/s to send (0: flat out)")
    a = p.parse_args(argv)
    if a.role == "send":
        _send(a.transport, a.payload, a.port, a.duration, a.pace)
    else:
        print(json.dumps(_recv(a.transport, a.payload, a.port, a.duration, a.warmup)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
