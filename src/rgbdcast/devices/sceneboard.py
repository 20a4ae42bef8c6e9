"""The mock's calibration board: a ChArUco board on a stand in the room, ray-cast into the
depth and color images of any camera of a multi-view mock (``MockDevice(board=True)``; pure
numpy: its texture is the bits OpenCV drew once, ``devices/board_default.bits.z``)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..frames import Intrinsics

__all__ = ["BOARD_AT", "draw_board"]

BOARD_AT = (0.55, 0.05, 3.5)
"""Where the board's top-left corner stands in the scene (x right, y up, z away; metres); it
faces the cameras (its plane is z = 3.5)."""


def draw_board(
    scene: Any,
    zbuf: np.ndarray,
    img: np.ndarray | None,
    intr: Intrinsics,
    pose: tuple[np.ndarray, np.ndarray],
    scale: float,
) -> None:
    """Ray-cast the board (a textured rectangle at z = BOARD_AT[2], upright, its top-left
    corner at BOARD_AT) inside its projected bounds."""
    assert scene.board is not None
    tex, width, height = scene.board
    x0, ytop, bz = BOARD_AT
    corners = [
        scene._to_cam(pose, (x, y, bz)) for x in (x0, x0 + width) for y in (ytop, ytop - height)
    ]
    us, vs = zip(*(intr.project(*c) for c in corners), strict=True)
    cols = slice(max(int(min(us)) - 1, 0), min(int(max(us)) + 2, intr.width))
    rows = slice(max(int(min(vs)) - 1, 0), min(int(max(vs)) + 2, intr.height))
    if cols.start >= cols.stop or rows.start >= rows.stop:
        return
    o, (dx, dy, dz) = scene._cast(intr, pose, rows, cols)
    sz = (bz - o[2]) / dz
    bx, by = o[0] + sz * dx - x0, ytop - (o[1] + sz * dy)  # metres from the top-left
    region = zbuf[rows, cols]
    inside = (bx >= 0) & (bx < width) & (by >= 0) & (by < height) & (sz * scale < region)
    region[inside] = (sz * scale)[inside]
    if img is not None:
        th, tw = tex.shape
        ti = np.clip((by[inside] / height * th).astype(np.int64), 0, th - 1)
        tj = np.clip((bx[inside] / width * tw).astype(np.int64), 0, tw - 1)
        grey = 30 + tex[ti, tj].astype(np.uint16) * 195 // 255  # printed: not pure black
        img[rows, cols][inside] = grey.astype(np.uint8)[:, None]
