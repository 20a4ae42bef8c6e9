"""``rgbdcast serve``'s flags turned into a server: its codecs, keys, outlets and devices. The
server core knows no flag and no outlet by name; this is where each flag finds its piece."""

from __future__ import annotations

import argparse
from typing import Any

from ..devices.base import Device
from ..errors import UsageError
from ..net.addresses import DEFAULT_WEB_PORT
from ..outlets.base import Outlet
from .common import check_domain, foxglove_options, zenoh_options

__all__ = ["codec_settings", "devices", "outlets", "server_keys"]


def codec_settings(args: argparse.Namespace) -> tuple[dict[str, str], dict[str, dict[str, Any]]]:
    """The codec of each image stream (those chosen) and their parameters."""
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
    video = {
        "gop": getattr(args, "color_gop", None),
        "crf": getattr(args, "color_crf", None),
        "bitrate": getattr(args, "color_bitrate", None),
        "encoder": getattr(args, "encoder", None),
    }
    video = {k: v for k, v in video.items() if v is not None}
    if video:
        from ..codecs.video import is_video

        if not is_video(codecs["color"] or ""):
            flags = ", ".join(f"--{'encoder' if k == 'encoder' else 'color-' + k}" for k in video)
            raise UsageError(f"{flags}: for video color; add --color-codec h264 (or hevc)")
        params["color"].update(video)
    if args.depth_level is not None:
        if not 1 <= args.depth_level <= 22:
            raise UsageError("--depth-level must be between 1 and 22")
        params["depth"]["level"] = params["infrared"]["level"] = args.depth_level
    return {k: v for k, v in codecs.items() if v}, params


def server_keys(args: argparse.Namespace) -> Any:
    """The server's CurveZMQ keys (``--secure DIR``), or None."""
    if not args.secure:
        return None
    from ..net.security import ServerKeys

    return ServerKeys.from_dir(args.secure)


def outlets(args: argparse.Namespace) -> list[Outlet]:
    """The outlets asked for, in the order they start: the TCP gateway, the web viewer (unless
    ``--no-web``), Zenoh and ROS 2 (one Zenoh session for both), Foxglove."""
    made: list[Outlet] = []
    gateway = _gateway_options(args)  # checked even when no gateway is asked for
    if args.domain is not None and not args.ros2:
        raise UsageError("--domain is for --ros2")
    if args.tcp_gateway:
        from ..outlets.gateway import TcpGatewayOutlet

        made.append(
            TcpGatewayOutlet(
                args.tcp_gateway, allow_insecure=args.gateway_allow_insecure, **gateway
            )
        )
    if not args.no_web:
        from ..outlets.web import WebOutlet

        made.append(WebOutlet(args.web or DEFAULT_WEB_PORT, fallback=args.web is None))
    if args.zenoh or args.ros2:
        from ..outlets.zenoh import ZenohOutlet, ZenohSession

        session = ZenohSession(
            zenoh_options(args, "zenoh-", ros2=args.ros2),
            allow_insecure=args.zenoh_allow_insecure,
        )
        if args.zenoh:
            made.append(ZenohOutlet(session))
        if args.ros2:
            from ..outlets.ros2 import Ros2Outlet

            domain = check_domain(0 if args.domain is None else args.domain)
            made.append(Ros2Outlet(session, domain, compressed_depth=args.ros2_compressed_depth))
    if args.foxglove is not None:
        from ..outlets.foxglove import FoxgloveOutlet

        made.append(FoxgloveOutlet(foxglove_options(args, args.foxglove)))
    return made


def _gateway_options(args: argparse.Namespace) -> dict[str, Any]:
    from ..protocol.gateway import SERVICES

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


def devices(args: argparse.Namespace) -> list[Device]:
    """The devices asked for: recordings, a Kinect v2, RealSense cameras, OpenCV sources, and
    mock devices (``--mock``, or one when nothing else is given)."""
    found = _sources(args)
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
    poses = list(getattr(args, "mock_pose", None) or [])
    if len(poses) > max(mocks, 1) or (poses and not mocks):
        raise UsageError(
            f"{len(poses)} --mock-pose for {mocks} mock devices: give one per --mock, in order"
        )
    if mocks:
        from ..devices.mock import MockDevice

        found += [
            MockDevice(
                f"mock{i}",
                streams=args.streams,
                fps=args.fps,
                color_size=args.color_size,
                depth_size=args.depth_size,
                prerender=args.prerender,
                color_layout=getattr(args, "mock_color_layout", "bgr"),
                pose=poses[i] if i < len(poses) else None,
                board=bool(getattr(args, "mock_board", False)),
            )
            for i in range(mocks)
        ]
    return found


def _sources(args: argparse.Namespace) -> list[Device]:
    devices: list[Device] = []
    if args.replay:
        from ..record.replay import replay_devices

        for path in args.replay:
            devices += replay_devices(path, loop=args.loop, speed=args.speed)
    if args.kinect2:
        import platform

        if platform.system() == "Windows":
            from ..devices.kinect2 import Kinect2Device

            devices.append(Kinect2Device())
        else:
            from ..devices.freenect2 import Freenect2Device

            devices.append(Freenect2Device())
    if args.realsense or args.realsense_playback:
        from ..devices.realsense import RealSenseDevice

        devices += [RealSenseDevice(serial or None) for serial in args.realsense]
        devices += [
            RealSenseDevice(playback=f, loop=not args.no_loop) for f in args.realsense_playback
        ]
    sources = len(args.webcam) + len(args.video) + len(args.image)
    if len(args.calibration) > sources:
        raise UsageError(
            f"{len(args.calibration)} --calibration files for {sources} OpenCV sources: give "
            "one per --webcam/--video/--image, in that order"
        )
    if not sources:
        return devices
    from ..devices.opencv import OpenCVDevice

    files = iter(args.calibration)
    devices += [
        OpenCVDevice(src, fps=args.source_fps, size=args.source_size, calibration=next(files, None))
        for src in args.webcam
    ]
    devices += [
        OpenCVDevice(f, fps=args.source_fps, loop=not args.no_loop, calibration=next(files, None))
        for f in args.video
    ]
    devices += [
        OpenCVDevice(f, fps=args.source_fps, calibration=next(files, None)) for f in args.image
    ]
    return devices
