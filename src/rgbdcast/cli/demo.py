"""``rgbdcast demo``: serve the mock device, prove every stream end to end, show where to look."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from ..codecs.png import encode_png
from ..errors import UsageError
from ..frames import StreamKind
from ..net.addresses import DEFAULT_CONTROL_PORT, DEFAULT_WEB_PORT
from ..outlets.web import WebOutlet
from .common import install_stop_signals

__all__ = ["add_parsers"]


def add_parsers(sub: Any) -> None:
    p = sub.add_parser(
        "demo",
        help="serve the mock device and show that every stream arrives",
        description="Start a server on the built-in mock device, receive every stream with a "
        "local client for a few seconds, save snapshots, then keep serving until Ctrl-C.",
    )
    p.add_argument("--port", type=int, default=DEFAULT_CONTROL_PORT, help="control port")
    p.add_argument("--out", default="demo-output", help="snapshot folder (default demo-output)")
    p.add_argument(
        "--duration",
        type=float,
        default=None,
        help="stop after this many seconds (default: run until Ctrl-C)",
    )
    p.set_defaults(func=cmd_demo)


def _start_server(port: int) -> tuple[Any, WebOutlet]:
    from ..devices.mock import MockDevice
    from ..server import Server

    for attempt in (port, 0):
        web = WebOutlet(DEFAULT_WEB_PORT, fallback=True)
        server = Server(port=attempt, name="rgbdcast demo", outlets=[web])
        server.add_device(MockDevice("mock0"))
        try:
            server.start()
            return server, web
        except UsageError:
            if attempt == 0:
                raise
            print(f"port {port} is busy; using a free port instead", flush=True)
    raise AssertionError("unreachable")


def _snapshots(client: Any, out: Path) -> list[Path]:
    from ..save import frame_to_file
    from ..viz import colorize_depth, draw_skeletons

    subs = {k: client.subscribe("mock0", k) for k in StreamKind}
    time.sleep(2.0)
    paths: list[Path] = []
    print(f"{'stream':<10}{'fps':>6}{'p50 ms':>9}{'p99 ms':>9}{'dropped':>9}{'Mbit/s':>9}")
    for kind, sub in subs.items():
        s = sub.snapshot()
        print(
            f"{kind.value:<10}{s.fps:>6.1f}{s.latency_p50_ms:>9.2f}{s.latency_p99_ms:>9.2f}"
            f"{s.dropped:>9}{s.mbit_s:>9.1f}"
        )
    frames = {k: sub.latest(timeout=5.0) for k, sub in subs.items()}
    for sub in subs.values():
        sub.close()
    if any(f is None for f in frames.values()):
        missing = [k.value for k, f in frames.items() if f is None]
        raise UsageError(f"no frames arrived on {', '.join(missing)}")
    for frame in frames.values():
        assert frame is not None
        paths.append(frame_to_file(frame, out))
    color, depth, body = (frames[k] for k in (StreamKind.color, StreamKind.depth, StreamKind.body))
    assert color is not None and depth is not None and body is not None
    overlay = out / "color_with_skeleton.png"
    overlay.write_bytes(encode_png(draw_skeletons(color.array, body.bodies, "color")))
    dview = out / "depth_colormap_with_skeleton.png"
    dview.write_bytes(encode_png(draw_skeletons(colorize_depth(depth.array), body.bodies, "depth")))
    return [*paths, overlay, dview]


def cmd_demo(args: argparse.Namespace) -> int:
    from ..client import Client

    stop = install_stop_signals()
    server, web = _start_server(args.port)
    try:
        control = next(iter(server.endpoints.values()))
        print(f"serving the mock device at {control}  (announced on Zeroconf)", flush=True)
        if web.url:
            print(f"\n  >>> live viewer: open {web.url} in a browser <<<\n", flush=True)
        print("receiving every stream with a local client for 2 s ...", flush=True)
        out = Path(args.out)
        with Client(control) as client:
            paths = _snapshots(client, out)
        print(f"snapshots written to {out.resolve()}/:")
        for p in paths:
            print(f"  {p.name}")
        print("\nwhere to look:")
        if web.url:
            print(f"  live viewer      {web.url}")
        print(f"  live figures     rgbdcast stats {control}")
        print(f"  devices/streams  rgbdcast info {control}")
        print("  find servers     rgbdcast discover")
        print(f"  save frames      rgbdcast save {control} --out frames")
        print(f"  point clouds     rgbdcast save {control} --out clouds --ply   (3-D: the viewer)")
        print(f"  Foxglove         rgbdcast bridge --foxglove {control}   (docs/foxglove.md)")
        print(f"  from Python      Client('{control}').subscribe('mock0', 'depth')")
        print(
            "  less bandwidth   rgbdcast serve --mock --color-codec h264 --depth-codec qdepth "
            "--infrared-codec h264   (about 19 instead of 170 Mbit/s; docs/video.md)"
        )
        print(
            "serving until Ctrl-C ..."
            if args.duration is None
            else f"serving for {args.duration:g} s ...",
            flush=True,
        )
        started = time.monotonic()
        while not stop.wait(0.2):
            if args.duration is not None and time.monotonic() - started >= args.duration:
                break
    finally:
        server.stop()
    print("demo stopped")
    return 0
