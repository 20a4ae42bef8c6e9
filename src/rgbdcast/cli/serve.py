"""``rgbdcast serve``: serve devices to any number of clients, with the outlets asked for."""

from __future__ import annotations

import argparse
import math
import time
from typing import Any

from .._version import __version__
from ..codecs.videoenc import DEFAULT_CRF, DEFAULT_GOP
from ..errors import UsageError
from ..frames import StreamKind
from ..net.addresses import DEFAULT_CONTROL_PORT, DEFAULT_WEB_PORT
from ..outlets.foxglove import FoxgloveOutlet
from ..outlets.gateway import TcpGatewayOutlet
from ..outlets.ros2 import Ros2Outlet
from ..outlets.web import WebOutlet
from ..outlets.zenoh import ZenohOutlet
from . import assemble
from .common import (
    add_foxglove_options,
    add_zenoh_options,
    bitrate_type,
    install_stop_signals,
    size_type,
    streams_type,
)

__all__ = ["add_parsers", "cmd_serve"]


def add_parsers(sub: Any) -> None:
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
        "--clock-offset-ms",
        type=float,
        default=0.0,
        metavar="MS",
        help="diagnostic: run this server's clock MS milliseconds off the host's (frame times "
        "and time requests), to see clients measure and correct it",
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
        "--mock-pose",
        action="append",
        default=[],
        type=pose_type,
        metavar="X,Y,Z,RX,RY,RZ",
        help="a mock's depth camera pose in a shared world, one per --mock in order: metres, "
        "and degrees about the world axes (R = Rz Ry Rx; the world is a zero-pose camera's "
        "optical frame: x right, y down, z forward). 0,0,0,0,-30,0 turns a camera 30 degrees "
        "to its left. Several mocks then see the same room from their own viewpoints",
    )
    p.add_argument(
        "--mock-board",
        action="store_true",
        help="the mocks show the default calibration board on a stand in the room (for "
        "rgbdcast calibrate)",
    )
    p.add_argument(
        "--streams",
        type=streams_type,
        default=list(StreamKind),
        help="streams to serve, e.g. depth,body (default: all)",
    )
    p.add_argument("--fps", type=float, default=30.0, help="mock frame rate (default 30)")
    p.add_argument("--color-size", type=size_type, default=(1920, 1080), help="mock color WxH")
    p.add_argument("--depth-size", type=size_type, default=(512, 424), help="mock depth WxH")
    p.add_argument(
        "--prerender",
        type=int,
        default=0,
        metavar="N",
        help="render N mock framesets up front and loop them (benchmarks)",
    )
    p.add_argument(
        "--mock-color-layout",
        choices=["bgr", "yuy2"],
        default="bgr",
        help="the layout the mock delivers color in: bgr, or yuy2 as a Kinect v2's raw frame "
        "(encoded from it without BGR; default bgr)",
    )
    from ..codecs import available, default_codec

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
        "--color-gop",
        type=int,
        default=None,
        metavar="N",
        help="video color (h264, hevc): at most N frames between keyframes "
        f"(default {DEFAULT_GOP}); a subscriber that joins or loses a frame also gets one on "
        "request",
    )
    p.add_argument(
        "--color-crf",
        type=int,
        default=None,
        metavar="Q",
        help=f"video color: constant quality 0-51, lower is better (default {DEFAULT_CRF})",
    )
    p.add_argument(
        "--color-bitrate",
        type=bitrate_type,
        default=None,
        metavar="RATE",
        help="video color: a bitrate instead of constant quality, e.g. 4M or 800k (bits/s)",
    )
    p.add_argument(
        "--encoder",
        choices=["auto", "x264", "nvenc", "qsv", "vaapi", "videotoolbox", "amf"],
        default=None,
        help="video color encoder: auto (default) tries this platform's hardware encoders "
        "and falls back to software (x264: libx264, or libx265 for hevc); the log says which",
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
    add_zenoh_options(p, "zenoh-")
    add_foxglove_options(p, flag=False)
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
        type=size_type,
        default=None,
        metavar="WxH",
        help="resolution to request from --webcam cameras",
    )
    p.add_argument("--no-loop", action="store_true", help="play --video files once")
    p.add_argument(
        "--calibration",
        action="append",
        default=[],
        metavar="FILE",
        help="the camera calibration of an OpenCV source (OpenCV YAML/XML/JSON, or rgbdcast "
        "JSON); one per --webcam/--video/--image, in that order (repeatable). Without one, "
        "nothing is claimed about the source's geometry",
    )
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


def cmd_serve(args: argparse.Namespace) -> int:
    from ..server import Server

    codecs, params = assemble.codec_settings(args)
    server = Server(
        address=args.bind,
        name=args.name,
        announce=not args.no_announce,
        port=args.port,
        interfaces=args.interface,
        codecs=codecs,
        codec_params=params,
        secure=assemble.server_keys(args),
        checksums=args.checksums,
        outlets=assemble.outlets(args),
        **_clock(args.clock_offset_ms),
    )
    for dev in assemble.devices(args):
        server.add_device(dev)
    stop = install_stop_signals()
    server.start()
    try:
        control = next(iter(server.endpoints.values()))
        print(f"rgbdcast {__version__}: serving {server.name!r} at {control}", flush=True)
        for line in _banner(server):
            print(f"  {line}", flush=True)
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


def _banner(server: Any) -> list[str]:
    """What a user starting the server needs to see: keys, devices, and where each outlet is."""
    lines = []
    if server.secure is not None:
        lines.append(
            f"secure (CurveZMQ): server key fingerprint {server.secure.fingerprint}; "
            f"clients allowed by the keys in {server.secure.authorized}"
        )
    for dev in server.devices:
        lines.append(f"device {dev.id}: {', '.join(k.value for k in dev.streams)}")
    gateway = server.outlet(TcpGatewayOutlet)
    if gateway is not None and gateway.endpoint:
        lines.append(f"plain-TCP gateway at {gateway.endpoint}")
    web = server.outlet(WebOutlet)
    if web is not None and web.url:
        lines.append(f"web viewer at {web.url}  (open it in a browser)")
    zenoh = server.outlet(ZenohOutlet)
    if zenoh is not None and zenoh.publishing is not None:
        name = zenoh.publishing.server
        lines.append(f"Zenoh: rgbdcast/{name}/<device>/<stream> (key chunks cleaned)")
    ros2 = server.outlet(Ros2Outlet)
    if ros2 is not None and ros2.node is not None:
        lines.append(
            f"ROS 2 (domain {ros2.node.domain}): node {ros2.node.node}, topics "
            "/<device>/<stream>/image_raw[/compressed], camera_info, /<device>/bodies"
        )
    fox = server.outlet(FoxgloveOutlet)
    if fox is not None and fox.publishing is not None:
        lines.append(f"Foxglove: open connection {fox.publishing.server.url} (docs/foxglove.md)")
    return lines


def _status_line(stats: dict[str, Any]) -> str:
    parts = []
    for name, s in stats["streams"].items():
        if s["subscribed"]:
            parts.append(f"{name} sent {s['sent']} ({s['bytes_sent'] / 1e6:.0f} MB)")
    rss = stats["process"]["rss_bytes"] / 1e6
    return f"[status] {'; '.join(parts) or 'no subscribers'}; {rss:.0f} MB resident"


def _clock(offset_ms: float) -> dict[str, Any]:
    """``serve --clock-offset-ms``: a server clock off the host's (a diagnostic)."""
    if not math.isfinite(offset_ms) or abs(offset_ms) > 86_400_000:
        raise UsageError(f"--clock-offset-ms must be within a day, got {offset_ms}")
    if offset_ms == 0:
        return {}
    skew = int(offset_ms * 1e6)
    return {"clock": lambda: time.time_ns() + skew}


def pose_type(text: str) -> tuple[float, float, float, float, float, float]:
    """``X,Y,Z,RX,RY,RZ`` for ``--mock-pose``."""
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 6 or not all(math.isfinite(v) for v in values):
        raise argparse.ArgumentTypeError(f"a pose is X,Y,Z,RX,RY,RZ (six numbers), got {text!r}")
    return values  # type: ignore[return-value]
