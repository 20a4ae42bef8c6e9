"""``rgbdcast calibrate``: place the cameras of a rig with a ChArUco board; write the rig file.
``--print-board`` renders the board to print."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import numpy as np

from ..devices.board import DEFAULT_BOARD, BoardSpec
from ..errors import UsageError
from ..net.addresses import make_endpoint, parse_endpoint
from .common import connect

__all__ = ["add_parsers"]


def add_parsers(sub: Any) -> None:
    p = sub.add_parser(
        "calibrate",
        help="find where the cameras of a rig are, with a ChArUco board",
        description="Watch the board with every camera (depth and color) of the servers given, "
        "place each camera in the first one's depth frame, and write the rig file "
        "(docs/rig.md) that Rig, `view --rig`, `record --rig` and `bridge --rig` use. Hold the "
        "board still where two or more cameras see it; cameras that never see it together "
        "with the first are placed through those that do.",
        epilog="Print the board first:  rgbdcast calibrate --print-board board.png",
    )
    p.add_argument("endpoint", nargs="*", help="servers of the rig, e.g. tcp://pc1:5606")
    p.add_argument("--device", action="append", help="only this device id (repeatable)")
    p.add_argument(
        "--board",
        default=DEFAULT_BOARD,
        help=f"charuco:COLSxROWS:SQUARE_M:MARKER_M:DICT (default {DEFAULT_BOARD}, the one "
        "--print-board prints and the mock shows)",
    )
    p.add_argument("--out", "-o", default="rig.json", help="the rig file (default rig.json)")
    p.add_argument(
        "--framesets",
        type=int,
        default=30,
        help="framesets with the board in two or more cameras to collect (default 30)",
    )
    p.add_argument("--timeout", type=float, default=60.0, help="give up after this many seconds")
    p.add_argument(
        "--refine",
        action="store_true",
        help="then align the cameras' overlapping depth with ICP (needs Open3D: "
        "pip install 'rgbdcast[icp]')",
    )
    p.add_argument(
        "--print-board", metavar="PNG", default=None, help="render the board to print, and exit"
    )
    p.set_defaults(func=cmd_calibrate)


def cmd_calibrate(args: argparse.Namespace) -> int:
    spec = BoardSpec.parse(args.board)
    if args.print_board is not None:
        return _print_board(spec, args.print_board)
    if not args.endpoint:
        raise UsageError("name the rig's servers, e.g. rgbdcast calibrate tcp://pc1:5606 pc2")
    if args.framesets < 1:
        raise UsageError("--framesets must be 1 or more")
    if args.refine:
        from ..icp import require_open3d

        require_open3d()
    members = _members(args.endpoint, args.device)
    from ..calibrate import calibrate

    names = _short_names(members)
    show = _Progress(names, args.framesets, sys.stdout.isatty())
    t0 = time.monotonic()
    print(f"calibrating {len(members)} cameras with {spec}: hold the board still", flush=True)
    rig, refined = calibrate(
        members,
        spec,
        framesets=args.framesets,
        timeout_s=args.timeout,
        on_progress=show,
        refine=args.refine,
    )
    show.end()
    from ..rig import save_rig_file

    save_rig_file(rig, args.out)
    root = rig.devices[f"{members[0][0]} {members[0][1]}"]
    for (ep, dev), name in zip(members, names, strict=True):
        cam = rig.devices[f"{ep} {dev}"]
        where = np.linalg.norm(cam.rig_from_depth.t - root.rig_from_depth.t)
        spread = (
            f", spread {cam.spread_mm:.1f} mm / {cam.spread_deg:.2f}°"
            if cam.spread_mm is not None and cam.spread_deg is not None
            else " (the rig frame)"
        )
        reproj = f"{cam.reprojection_px:.2f} px" if cam.reprojection_px is not None else "-"
        print(f"  {name}: {where:.3f} m from {names[0]}, reprojection {reproj}{spread}")
    for line in refined:
        print(f"  {line}")
    print(f"wrote {args.out} in {time.monotonic() - t0:.1f} s", flush=True)
    return 0


def _members(endpoints: list[str], only: list[str] | None) -> list[tuple[str, str]]:
    """Every device with depth and color on the servers (those named by --device)."""
    out = []
    for given in endpoints:
        endpoint = make_endpoint(*parse_endpoint(given))
        client = connect(endpoint)
        try:
            for dev_id, rec in client.devices.items():
                if only and dev_id not in only:
                    continue
                if {"depth", "color"} <= set(rec.streams):
                    out.append((endpoint, dev_id))
        finally:
            client.disconnect()
    if not out:
        which = f" named {', '.join(only)}" if only else ""
        raise UsageError(f"no device{which} with depth and color on {', '.join(endpoints)}")
    return out


def _short_names(members: list[tuple[str, str]]) -> list[str]:
    ids = [d for _, d in members]
    return [d if ids.count(d) == 1 else f"{ep} {d}" for ep, d in members]


class _Progress:
    """A line per update on a terminal (rewritten in place), one a second otherwise."""

    def __init__(self, names: list[str], goal: int, tty: bool) -> None:
        self.names, self.goal, self.tty = names, goal, tty
        self.next = 0.0
        self.shown = False

    def __call__(self, cal: Any) -> None:
        now = time.monotonic()
        if not self.tty and now < self.next:
            return
        self.next = now + 1.0
        parts = []
        for name, p in zip(self.names, cal.progress.values(), strict=True):
            state = "placed" if p.placed else f"{p.sightings} views"
            spread = f" ±{p.spread_mm:.1f}mm/{p.spread_deg:.2f}°" if p.spread_mm is not None else ""
            parts.append(f"{name}: {p.corners:2d} corners, {state}{spread}")
        line = f"{min(cal.useful, self.goal)}/{self.goal}  " + " | ".join(parts)
        print(("\r" + line) if self.tty else line, end="" if self.tty else "\n", flush=True)
        self.shown = True

    def end(self) -> None:
        if self.tty and self.shown:
            print()


def _print_board(spec: BoardSpec, path: str) -> int:
    from ..devices.base import require

    cv2 = require("cv2", "webcam")
    px = 200
    img = spec.image(px_per_square=px, margin_px=px // 2)
    if not cv2.imwrite(path, img):
        raise UsageError(f"could not write {path} (is it a .png in a folder that exists?)")
    w, h = spec.size_m
    print(
        f"wrote {path}: {spec} ({img.shape[1]}x{img.shape[0]} px). Print it so that a square "
        f"measures {spec.square_m * 1000:g} mm (the board {w * 1000:g} x {h * 1000:g} mm), flat "
        "and rigid; a different size needs --board with the measured sizes",
        flush=True,
    )
    return 0
