"""The ``rgbdcast`` command. Every subcommand has ``--help``; errors are one line, exit code 2."""

from __future__ import annotations

import argparse
import logging
import math
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from ._version import __version__
from .errors import RgbdcastError, UsageError
from .frames import StreamKind
from .net.addresses import DEFAULT_CONTROL_PORT, DEFAULT_WEB_PORT

__all__ = ["main"]

DEFAULT_ENDPOINT = f"tcp://127.0.0.1:{DEFAULT_CONTROL_PORT}"


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
        return w, h
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT, got {text!r}") from None


def _streams(text: str) -> list[StreamKind]:
    try:
        return [StreamKind(s.strip()) for s in text.split(",") if s.strip()]
    except ValueError:
        names = ",".join(k.value for k in StreamKind)
        raise argparse.ArgumentTypeError(f"streams are a comma list of {names}") from None


def _endpoint_arg(p: argparse.ArgumentParser, optional: bool = True) -> None:
    p.add_argument(
        "endpoint",
        nargs="?" if optional else None,
        default=DEFAULT_ENDPOINT,
        help=f"server control endpoint, tcp://HOST:PORT or HOST[:PORT] ({DEFAULT_ENDPOINT})",
    )
    _secure_arg(p)


def _secure_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--secure",
        metavar="DIR",
        default=None,
        help="for a server started with --secure: DIR holds server.key and our "
        "client.key_secret (rgbdcast keygen)",
    )


def client_keys(args: argparse.Namespace) -> Any:
    """The client keys asked for with --secure DIR, or None."""
    folder = getattr(args, "secure", None)
    if not folder:
        return None
    from .net.security import ClientKeys

    return ClientKeys.from_dir(folder)


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad argument is one line and a hint, not the whole usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="rgbdcast",
        description="Stream color, depth, infrared and body frames from RGB-D sensors.",
        epilog="Start with:  rgbdcast serve   then, elsewhere:  rgbdcast discover",
    )
    parser.add_argument("--version", action="version", version=f"rgbdcast {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser(
        "serve",
        help="serve devices (the mock device by default)",
        description="Serve one or more devices to any number of clients.",
    )
    p.add_argument("--name", help="server name shown to clients (default: rgbdcast on HOST)")
    p.add_argument("--bind", default=None, help="address to listen on (default: all interfaces)")
    p.add_argument(
        "--port",
        type=int,
        default=DEFAULT_CONTROL_PORT,
        help=f"control port (default {DEFAULT_CONTROL_PORT}; 0 picks a free one)",
    )
    p.add_argument("--no-announce", action="store_true", help="do not announce on Zeroconf")
    p.add_argument(
        "--secure",
        metavar="DIR",
        default=None,
        help="require CurveZMQ on every endpoint: DIR/server.key_secret, and the client keys "
        "allowed in DIR/authorized (rgbdcast keygen --out DIR); the web viewer then needs its "
        "token and stays on 127.0.0.1 unless --web says where",
    )
    p.add_argument(
        "--zenoh-allow-insecure",
        action="store_true",
        help="let a --secure server publish into Zenoh without Zenoh TLS settings",
    )
    p.add_argument(
        "--checksums",
        action="store_true",
        help="test mode: put the CRC-32 of every payload in its frame header",
    )
    p.add_argument(
        "--gateway-allow-insecure",
        action="store_true",
        help="let the plain-TCP gateway (which cannot authenticate) run on a --secure server",
    )
    p.add_argument(
        "--interface",
        action="append",
        metavar="IP",
        help="announce on this interface address only (repeatable)",
    )
    p.add_argument(
        "--mock", action="append_const", const=1, help="serve a mock device (repeatable)"
    )
    p.add_argument(
        "--streams",
        type=_streams,
        default=list(StreamKind),
        help="streams to serve, e.g. depth,body (default: all)",
    )
    p.add_argument("--fps", type=float, default=30.0, help="mock frame rate (default 30)")
    p.add_argument("--color-size", type=_size, default=(1920, 1080), help="mock color WxH")
    p.add_argument("--depth-size", type=_size, default=(512, 424), help="mock depth WxH")
    p.add_argument(
        "--prerender",
        type=int,
        default=0,
        metavar="N",
        help="render N mock framesets up front and loop them (benchmarks)",
    )
    from .codecs import available, default_codec

    for kind in (StreamKind.color, StreamKind.depth, StreamKind.infrared):
        names = ", ".join(c.name for c in available(kind))
        p.add_argument(
            f"--{kind.value}-codec",
            default=None,
            metavar="CODEC",
            help=f"codec of {kind.value} frames: {names} (default {default_codec(kind)})",
        )
    p.add_argument(
        "--color-quality",
        type=int,
        default=None,
        metavar="Q",
        help="JPEG quality 1-100 (default 85)",
    )
    p.add_argument(
        "--color-strips",
        type=int,
        default=None,
        metavar="N",
        help="encode color JPEG as N bands in parallel, joined into one standard JPEG by "
        "restart markers (lower latency; default 2 from a megapixel up on 2+ cores, else 1)",
    )
    p.add_argument(
        "--color-subsampling",
        choices=["420", "422", "444"],
        default=None,
        help="JPEG chroma subsampling (default 420)",
    )
    p.add_argument(
        "--color-reencode",
        action="store_true",
        help="re-encode color a source delivers as JPEG (a recording, an MJPEG video) with "
        "the settings above instead of sending the source's JPEG as it is (the default)",
    )
    p.add_argument(
        "--depth-level",
        type=int,
        default=None,
        metavar="L",
        help="zstd level of the grad-zstd codecs for depth and infrared (1-22)",
    )
    p.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    p.add_argument("--quiet", action="store_true", help="no periodic status line")
    p.add_argument(
        "--tcp-gateway",
        metavar="[HOST:]PORT",
        default=None,
        help="also serve the newest frames over plain TCP (Camera2TCP clients, any "
        "language); off by default, Camera2TCP used port 2004",
    )
    p.add_argument(
        "--gateway-max-clients",
        type=int,
        default=32,
        metavar="N",
        help="gateway connections at once (default 32)",
    )
    p.add_argument(
        "--gateway-idle-timeout",
        type=float,
        default=60.0,
        metavar="S",
        help="close gateway connections silent for S seconds (default 60)",
    )
    p.add_argument(
        "--gateway-service",
        action="append",
        default=[],
        metavar="SERVICE=DEVICE",
        help="serve a Camera2TCP service from this device (default: the first device "
        "with the stream)",
    )
    p.add_argument(
        "--web",
        metavar="[HOST:]PORT",
        default=None,
        help=f"serve the web viewer here (default: port {DEFAULT_WEB_PORT} on the bind "
        "address, or a free port if that one is busy)",
    )
    p.add_argument("--no-web", action="store_true", help="do not serve the web viewer")
    p.add_argument(
        "--zenoh",
        action="store_true",
        help="also publish every stream into Zenoh under rgbdcast/<server>/<device>/<stream> "
        "([zenoh] extra; see the --zenoh-* options)",
    )
    p.add_argument(
        "--ros2",
        action="store_true",
        help="also appear as ROS 2 topics (rmw_zenoh's format, no ROS needed here); connects "
        "to a Zenoh router at tcp/127.0.0.1:7447 unless --zenoh-connect/--zenoh-listen say",
    )
    p.add_argument(
        "--domain", type=int, default=None, metavar="N", help="ROS_DOMAIN_ID for --ros2 (default 0)"
    )
    p.add_argument(
        "--ros2-compressed-depth",
        choices=["png", "rvl"],
        default="png",
        help="method of the /<device>/depth/image_raw/compressedDepth topic (default png)",
    )
    from .zbridge import add_zenoh_options

    add_zenoh_options(p, "zenoh-")
    p.add_argument(
        "--webcam",
        action="append",
        default=[],
        metavar="INDEX|URL",
        help="serve an OpenCV camera index or stream URL (repeatable; [webcam] extra)",
    )
    p.add_argument(
        "--video",
        action="append",
        default=[],
        metavar="FILE",
        help="serve a video file as a color stream (repeatable)",
    )
    p.add_argument(
        "--image",
        action="append",
        default=[],
        metavar="FILE",
        help="serve a still image as a color stream (repeatable)",
    )
    p.add_argument(
        "--source-fps",
        type=float,
        default=None,
        metavar="FPS",
        help="rate of --video and --image (default: the file's own, 30 for images); "
        "requested rate of --webcam",
    )
    p.add_argument(
        "--source-size",
        type=_size,
        default=None,
        metavar="WxH",
        help="resolution to request from --webcam cameras",
    )
    p.add_argument("--no-loop", action="store_true", help="play --video files once")
    p.add_argument(
        "--realsense",
        action="append",
        default=[],
        metavar="SERIAL",
        help="serve an Intel RealSense ('' for the first one; [realsense] extra)",
    )
    p.add_argument(
        "--realsense-playback",
        action="append",
        default=[],
        metavar="FILE",
        help="serve a RealSense SDK recording as the device (loops unless --no-loop)",
    )
    p.add_argument(
        "--replay",
        action="append",
        default=[],
        metavar="FILE.mcap",
        help="serve a recording made by  rgbdcast record  (each recorded device)",
    )
    p.add_argument("--loop", action="store_true", help="play --replay files in a loop")
    p.add_argument(
        "--speed", type=float, default=1.0, help="--replay speed (default 1: original timing)"
    )
    p.add_argument(
        "--kinect2",
        action="store_true",
        help="serve a Kinect v2 (Windows: Kinect SDK 2.0 via pykinect2; [kinect2] extra)",
    )
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser(
        "discover",
        help="list servers announced on the network",
        description="Browse Zeroconf for servers and show their devices.",
    )
    p.add_argument("--timeout", type=float, default=3.0, help="seconds to listen (default 3)")
    p.add_argument("--interface", action="append", metavar="IP", help="listen on this address")
    p.set_defaults(func=cmd_discover)

    p = sub.add_parser("ping", help="measure round-trip time to a server")
    _endpoint_arg(p)
    p.add_argument("-n", "--count", type=int, default=4, help="pings to send (default 4)")
    p.set_defaults(func=cmd_ping)

    p = sub.add_parser("info", help="show a server's devices and streams (who/me)")
    _endpoint_arg(p)
    p.add_argument("--json", action="store_true", help="print the raw me payload")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("stats", help="live per-stream fps, latency, drops and bandwidth")
    _endpoint_arg(p)
    p.add_argument("--duration", type=float, default=5.0, help="seconds to measure (default 5)")
    p.add_argument("--streams", type=_streams, default=None, help="streams to watch (default all)")
    p.add_argument("--device", action="append", help="device id to watch (default all)")
    p.add_argument(
        "--server",
        action="store_true",
        help="also show the server's side of each stream: frames handed to ZeroMQ per second "
        "(which drops them for a subscriber whose queue is full), frames "
        "its encoder was too busy for (busy/s), the mean encode time, and how often its "
        "publisher sat waiting for the source (src-wait: near 100%% means the camera sets "
        "the pace, near 0%% that encoding or sending does)",
    )
    from .zbridge import add_zenoh_source

    add_zenoh_source(p)
    p.set_defaults(func=cmd_stats)

    p = sub.add_parser(
        "save",
        help="save frames of every stream to disk",
        description="Save N frames of each stream: PNG images, 16-bit PNG depth "
        "and infrared, JSON bodies; one folder per device.",
    )
    _endpoint_arg(p)
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("-n", "--frames", type=int, default=1, help="frames per stream (default 1)")
    p.add_argument("--streams", type=_streams, default=None, help="streams to save (default all)")
    p.add_argument("--timeout", type=float, default=10.0, help="give up after this many seconds")
    p.set_defaults(func=cmd_save)

    p = sub.add_parser(
        "devices",
        help="list what can be served on this machine",
        description="Probe OpenCV cameras, RealSense devices and the Kinect v2 "
        "runtimes, and name the extras missing for the rest.",
    )
    p.add_argument("--max-index", type=int, default=4, help="camera indices to probe (default 4)")
    p.set_defaults(func=cmd_devices)

    p = sub.add_parser(
        "keygen",
        help="make CurveZMQ key pairs for serve --secure",
        description="Write a server key pair and client key pairs (ZeroMQ certificate files) "
        "into a new folder, with the clients' public keys in DIR/authorized. Give the server "
        "DIR (serve --secure DIR); give each client DIR/server.key and its own .key_secret "
        "(--secure DIR on the client side), over a channel you trust.",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="folder to write the keys into")
    p.add_argument(
        "--client",
        action="append",
        default=[],
        metavar="NAME",
        help="client key pairs to make (default one named client; repeatable)",
    )
    p.set_defaults(func=cmd_keygen)

    from . import bench, demo, view, zbridge
    from .record import cli as record_cli

    demo.add_parser(sub)
    view.add_parser(sub)
    record_cli.add_parsers(sub, _streams)
    zbridge.add_parsers(sub)
    bench.add_parser(sub)
    return parser


def _install_stop_signals(stop: threading.Event) -> None:
    def handler(signum: int, frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGINT, handler)
    for name in ("SIGTERM", "SIGBREAK"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), handler)


def cmd_serve(args: argparse.Namespace) -> int:
    from .devices.mock import MockDevice
    from .server import Server

    codecs = {k: getattr(args, f"{k}_codec") for k in ("color", "depth", "infrared")}
    params: dict[str, dict[str, Any]] = {"color": {}, "depth": {}, "infrared": {}}
    if args.color_quality is not None:
        if not 1 <= args.color_quality <= 100:
            raise UsageError("--color-quality must be between 1 and 100")
        params["color"]["quality"] = args.color_quality
    if args.color_strips is not None:
        params["color"]["strips"] = args.color_strips
    if args.color_subsampling is not None:
        params["color"]["subsampling"] = args.color_subsampling
    if args.color_reencode:
        params["color"]["passthrough"] = False
    if args.depth_level is not None:
        if not 1 <= args.depth_level <= 22:
            raise UsageError("--depth-level must be between 1 and 22")
        params["depth"]["level"] = params["infrared"]["level"] = args.depth_level
    server = Server(
        address=args.bind,
        name=args.name,
        announce=not args.no_announce,
        port=args.port,
        interfaces=args.interface,
        codecs={k: v for k, v in codecs.items() if v},
        codec_params=params,
        tcp_gateway=args.tcp_gateway,
        gateway_options=_gateway_options(args),
        web=None if args.no_web else (args.web or DEFAULT_WEB_PORT),
        web_fallback=args.web is None,
        zenoh=_zenoh(args),
        zenoh_native=args.zenoh,
        ros2_domain=_ros2_domain(args),
        ros2_compressed_depth=args.ros2_compressed_depth,
        secure=_server_keys(args),
        checksums=args.checksums,
        zenoh_insecure_ok=args.zenoh_allow_insecure,
        gateway_insecure_ok=args.gateway_allow_insecure,
    )
    for dev in _sources(args):
        server.add_device(dev)
    others = (
        args.webcam
        or args.video
        or args.image
        or args.kinect2
        or args.realsense
        or args.realsense_playback
        or args.replay
    )
    mocks = len(args.mock or []) or (0 if others else 1)
    for i in range(mocks):
        server.add_device(
            MockDevice(
                f"mock{i}",
                streams=args.streams,
                fps=args.fps,
                color_size=args.color_size,
                depth_size=args.depth_size,
                prerender=args.prerender,
            )
        )
    stop = threading.Event()
    _install_stop_signals(stop)
    server.start()
    try:
        ep = server.endpoints
        control = next(iter(ep.values()))
        print(f"rgbdcast {__version__}: serving {server.name!r} at {control}", flush=True)
        if server.secure is not None:
            print(
                f"  secure (CurveZMQ): server key fingerprint {server.secure.fingerprint}; "
                f"clients allowed by the keys in {server.secure.authorized}",
                flush=True,
            )
        for dev in server.devices:
            print(f"  device {dev.id}: {', '.join(k.value for k in dev.streams)}", flush=True)
        if server.gateway_endpoint:
            print(f"  plain-TCP gateway at {server.gateway_endpoint}", flush=True)
        if server.web is not None:
            print(f"  web viewer at {server.web.url}  (open it in a browser)", flush=True)
        if server.zenoh is not None:
            name = server.zenoh.server
            print(f"  Zenoh: rgbdcast/{name}/<device>/<stream> (key chunks cleaned)", flush=True)
        if server.ros2 is not None:
            print(
                f"  ROS 2 (domain {server.ros2.domain}): node {server.ros2.node}, topics "
                "/<device>/<stream>/image_raw[/compressed], camera_info, /<device>/bodies",
                flush=True,
            )
        print(
            f"watch it:  rgbdcast stats {control}    details:  rgbdcast info {control}", flush=True
        )
        print("stop with Ctrl-C", flush=True)
        started = time.monotonic()
        next_status = started + 10
        while not stop.wait(0.2):
            now = time.monotonic()
            if args.duration is not None and now - started >= args.duration:
                break
            if not args.quiet and now >= next_status:
                next_status = now + 10
                print(_status_line(server.stats()), flush=True)
    finally:
        t0 = time.monotonic()
        server.stop()
        print(f"stopped in {time.monotonic() - t0:.2f} s", flush=True)
    return 0


def _server_keys(args: argparse.Namespace) -> Any:
    if not args.secure:
        return None
    from .net.security import ServerKeys

    return ServerKeys.from_dir(args.secure)


def _zenoh(args: argparse.Namespace) -> Any:
    if not (args.zenoh or args.ros2):
        return None
    from .zbridge import zenoh_options

    return zenoh_options(args, "zenoh-", ros2=args.ros2)


def _ros2_domain(args: argparse.Namespace) -> int | None:
    if not args.ros2:
        if args.domain is not None:
            raise UsageError("--domain is for --ros2")
        return None
    from .zbridge import check_domain

    return check_domain(0 if args.domain is None else args.domain)


def _sources(args: argparse.Namespace) -> list[Any]:
    """The OpenCV devices asked for on the command line (the [webcam] extra)."""
    devices: list[Any] = []
    if args.replay:
        from .record.replay import replay_devices

        for path in args.replay:
            devices += replay_devices(path, loop=args.loop, speed=args.speed)
    if args.kinect2:
        import platform

        if platform.system() == "Windows":
            from .devices.kinect2 import Kinect2Device

            devices.append(Kinect2Device())
        else:
            from .devices.freenect2 import Freenect2Device

            devices.append(Freenect2Device())
    if args.realsense or args.realsense_playback:
        from .devices.realsense import RealSenseDevice

        devices += [RealSenseDevice(serial or None) for serial in args.realsense]
        devices += [
            RealSenseDevice(playback=f, loop=not args.no_loop) for f in args.realsense_playback
        ]
    if not (args.webcam or args.video or args.image):
        return devices
    from .devices.opencv import OpenCVDevice

    devices += [
        OpenCVDevice(src, fps=args.source_fps, size=args.source_size) for src in args.webcam
    ]
    devices += [OpenCVDevice(f, fps=args.source_fps, loop=not args.no_loop) for f in args.video]
    devices += [OpenCVDevice(f, fps=args.source_fps) for f in args.image]
    return devices


def _gateway_options(args: argparse.Namespace) -> dict[str, Any]:
    from .protocol.gateway import SERVICES

    services = {}
    for item in args.gateway_service:
        name, _, device = item.partition("=")
        if name not in SERVICES or not device:
            raise UsageError(
                f"--gateway-service takes SERVICE=DEVICE with SERVICE one of {', '.join(SERVICES)}"
            )
        services[name] = device
    if args.gateway_max_clients < 1 or args.gateway_idle_timeout <= 0:
        raise UsageError("--gateway-max-clients and --gateway-idle-timeout must be positive")
    return {
        "services": services,
        "max_clients": args.gateway_max_clients,
        "idle_timeout": args.gateway_idle_timeout,
    }


def _status_line(stats: dict[str, Any]) -> str:
    parts = []
    for name, s in stats["streams"].items():
        if s["subscribed"]:
            parts.append(f"{name} sent {s['sent']} ({s['bytes_sent'] / 1e6:.0f} MB)")
    rss = stats["process"]["rss_bytes"] / 1e6
    return f"[status] {'; '.join(parts) or 'no subscribers'}; {rss:.0f} MB resident"


def _client(endpoint: str, curve: Any = None) -> Any:
    from .client import Client

    client = Client(endpoint, reconnect=False, curve=curve)
    client.connect(timeout=3.0)
    return client


def cmd_ping(args: argparse.Namespace) -> int:
    with _client(args.endpoint, client_keys(args)) as client:
        print(f"pinging {client.server_name!r} at {client.control_endpoint}")
        rtts = []
        for i in range(max(1, args.count)):
            rtt = client.ping(timeout=3.0)
            rtts.append(rtt * 1000)
            print(f"pong {i + 1}: {rtt * 1000:.3f} ms", flush=True)
            if i + 1 < args.count:
                time.sleep(0.2)
        print(f"min/avg/max {min(rtts):.3f}/{sum(rtts) / len(rtts):.3f}/{max(rtts):.3f} ms")
    return 0


def _describe(me: dict[str, Any]) -> list[str]:
    lines = [f"server  {me.get('name')!r}  control {me.get('endpoints', {}).get('control')}"]
    for dev in me.get("devices", []):
        lines.append(f"  device {dev.get('id')}  {dev.get('name', '')}  ({dev.get('kind', '?')})")
        for kind, ep in dev.get("endpoints", {}).items():
            s = dev.get("streams", {}).get(kind, {})
            size = f"{s.get('width')}x{s.get('height')}" if s.get("width") else "-"
            lines.append(
                f"    {kind:<9} {size:>10} {s.get('fps', '?'):>5} fps"
                f"  codec {s.get('codec', '?'):<5} units {s.get('units', '?'):<9} {ep}"
            )
    return lines


def cmd_info(args: argparse.Namespace) -> int:
    with _client(args.endpoint, client_keys(args)) as client:
        me = client.who(timeout=3.0)
    if args.json:
        import json

        print(json.dumps(me, indent=2))
    else:
        print("\n".join(_describe(me)))
    return 0


def _subscribe_all(
    client: Any, streams: Sequence[StreamKind] | None, devices: Sequence[str] | None = None
) -> list[Any]:
    subs = []
    for dev_id, rec in client.devices.items():
        if devices and dev_id not in devices:
            continue
        for kind in rec.endpoints:
            if kind in StreamKind.__members__ and (streams is None or StreamKind(kind) in streams):
                subs.append(client.subscribe(dev_id, kind))
    if not subs:
        raise UsageError("the server offers none of the requested streams")
    return subs


def cmd_stats(args: argparse.Namespace) -> int:
    if args.zenoh:
        if args.server:
            raise UsageError("--server is for a ZeroMQ endpoint, not --zenoh")
        return _stats_zenoh(args)
    if args.connect:
        raise UsageError("--connect is for --zenoh KEYEXPR")
    with _client(args.endpoint, client_keys(args)) as client:
        subs = _subscribe_all(client, args.streams, args.device)
        end = time.monotonic() + args.duration
        head = f"{'stream':<22}{'fps':>7}{'p50 ms':>9}{'p99 ms':>9}{'dropped':>9}{'Mbit/s':>9}"
        if args.server:
            head += f"{'sent/s':>9}{'busy/s':>8}{'enc ms':>8}{'src-wait':>9}"
            before = (time.monotonic(), client.server_stats()["streams"])
        print(head)
        while time.monotonic() < end:
            time.sleep(min(1.0, max(0.0, end - time.monotonic())))
            if args.server:
                now = (time.monotonic(), client.server_stats()["streams"])
            lines = []
            for s in subs:
                snap = s.snapshot()
                line = (
                    f"{s.device_id + '/' + s.kind.value:<22}{snap.fps:>7.1f}"
                    f"{snap.latency_p50_ms:>9.2f}{snap.latency_p99_ms:>9.2f}"
                    f"{snap.dropped:>9}{snap.mbit_s:>9.1f}"  # not queue_dropped: we never read
                )
                if args.server:
                    line += _server_columns(f"{s.device_id}/{s.kind.value}", before, now)
                lines.append(line)
            if args.server:
                before = now
            print("\n".join(lines), flush=True)
            if sys.stdout.isatty() and time.monotonic() < end:
                print(f"\x1b[{len(lines)}A", end="")
    return 0


def _server_columns(
    key: str, before: tuple[float, dict[str, Any]], now: tuple[float, dict[str, Any]]
) -> str:
    """One stream's server counters over the last interval, as the extra ``stats`` columns."""
    from .net.publisher import stream_rates

    a, b = before[1].get(key), now[1].get(key)
    span = now[0] - before[0]
    if a is None or b is None or span <= 0:
        return f"{'-':>9}{'-':>8}{'-':>8}{'-':>9}"
    r = stream_rates(a, b, span)
    enc = "-" if math.isnan(r["encode_ms"]) else f"{r['encode_ms']:.2f}"
    wait = "-" if math.isnan(r["waited_share"]) else f"{100 * r['waited_share']:.0f}%"
    return f"{r['sent_fps']:>9.1f}{r['busy_fps']:>8.1f}{enc:>8}{wait:>9}"


def _stats_zenoh(args: argparse.Namespace) -> int:
    from .zclient import ZenohClient

    with ZenohClient(connect=args.connect) as zc:
        sub = zc.subscribe(args.zenoh, decode=False)
        end = time.monotonic() + args.duration
        print(f"{'key':<44}{'fps':>7}{'p50 ms':>9}{'p99 ms':>9}{'dropped':>9}{'Mbit/s':>9}")
        while time.monotonic() < end:
            time.sleep(min(1.0, max(0.0, end - time.monotonic())))
            now = time.time_ns()
            lines = [
                f"{key:<44}{snap.fps:>7.1f}{snap.latency_p50_ms:>9.2f}"
                f"{snap.latency_p99_ms:>9.2f}{snap.dropped:>9}{snap.mbit_s:>9.1f}"
                for key, stats in sorted(sub.per_key.items())
                for snap in [stats.snapshot(now)]
            ] or [f"(nothing on {args.zenoh} yet)"]
            print("\n".join(lines), flush=True)
            if sys.stdout.isatty() and time.monotonic() < end:
                print(f"\x1b[{len(lines)}A", end="")
    return 0


def cmd_save(args: argparse.Namespace) -> int:
    from .save import save_frames

    with _client(args.endpoint, client_keys(args)) as client:
        subs = _subscribe_all(client, args.streams)
        written = save_frames(subs, args.out, args.frames, args.timeout, progress=print)
    print(f"saved {written} files under {args.out}")
    return 0


def cmd_discover(args: argparse.Namespace) -> int:
    from .net.discovery import ServerBrowser, ServerInfo

    found: list[ServerInfo] = []
    lock = threading.Lock()

    def on_add(browser: Any, server_info: ServerInfo) -> None:
        with lock:
            found.append(server_info)
            print(f"+ {server_info.name}  {server_info.endpoint}", flush=True)
            try:
                with _client(server_info.endpoint) as client:
                    me = client.who(timeout=2.0)
                print("\n".join("    " + line for line in _describe(me)[1:]), flush=True)
            except RgbdcastError as exc:
                print(f"    (no answer: {exc})", flush=True)

    def on_remove(browser: Any, server_info: ServerInfo) -> None:
        print(f"- {server_info.name}  {server_info.endpoint}", flush=True)

    print(f"looking for servers for {args.timeout:g} s ...", flush=True)
    with ServerBrowser(interfaces=args.interface) as browser:
        ServerBrowser.on_add_server.connect(on_add, sender=browser)
        ServerBrowser.on_remove_server.connect(on_remove, sender=browser)
        time.sleep(args.timeout)
    print(f"{len(found)} server(s) found")
    return 0


def cmd_keygen(args: argparse.Namespace) -> int:
    from .net.security import fingerprint, keygen

    paths = keygen(args.out, tuple(args.client) or ("client",))
    import zmq.auth

    public, _ = zmq.auth.load_certificate(str(paths["server"]))
    print(f"keys written to {args.out}/ (server fingerprint {fingerprint(public)}):")
    for name, path in paths.items():
        print(f"  {name:<10}{path}  (secret: keep it on that machine only)")
    print(f"  authorized {args.out}/authorized/  (public keys the server accepts)")
    print(f"serve with:    rgbdcast serve --secure {args.out}")
    print(f"connect with:  rgbdcast info tcp://HOST:5606 --secure {args.out}")
    return 0


def cmd_devices(args: argparse.Namespace) -> int:
    from .devices.probe import probe_all

    for line in probe_all(args.max_index):
        print(line)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING - 10 * min(args.verbose, 2),
        format="%(levelname)s %(name)s: %(message)s",
    )
    if args.command is None:
        parser.print_help()
        return 2
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except KeyboardInterrupt:
        return 130
    except (RgbdcastError, OSError) as exc:
        print(f"rgbdcast {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # translate foreign errors (zmq, numpy) into one line
        name = type(exc).__name__
        print(f"rgbdcast {args.command}: error: {name}: {exc}", file=sys.stderr)
        if args.verbose:
            raise
        return 2


if __name__ == "__main__":
    sys.exit(main())
