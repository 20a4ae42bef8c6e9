"""The mock's calibration board: a ChArUco board on a stand in the room, ray-cast into the
depth and color images of any camera of a multi-view mock (``MockDevice(board=True)``; pure
numpy: its texture is the bits OpenCV drew once, ``devices/board_default.bits.z``)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..frames import Intrinsics

__all__ = ["BOARD_AT", "board_albedo", "draw_board", "rect_hits"]

BOARD_AT = (0.55, 0.05, 3.5)
"""Where the board's top-left corner stands in the scene (x right, y up, z away; metres); it
faces the cameras (its plane is z = 3.5)."""


def rect_hits(
    scene: Any, intr: Intrinsics, pose: tuple[np.ndarray, np.ndarray], rect: tuple[float, ...]
) -> tuple[slice, slice, np.ndarray, np.ndarray, np.ndarray] | None:
    """Where the rays of the pixels around an upright rectangle ``(x0, x1, y0, y1, z)`` (scene
    axes) meet its plane: rows, cols, hit x and y, and depth; None if it is off the image. The
    scene's box and the board are drawn with it."""
    x0, x1, y0, y1, bz = rect
    corners = [scene._to_cam(pose, (x, y, bz)) for x in (x0, x1) for y in (y0, y1)]
    us, vs = zip(*(intr.project(*c) for c in corners), strict=True)
    cols = slice(max(int(min(us)) - 1, 0), min(int(max(us)) + 2, intr.width))
    rows = slice(max(int(min(vs)) - 1, 0), min(int(max(vs)) + 2, intr.height))
    if cols.start >= cols.stop or rows.start >= rows.stop:
        return None
    o, (dx, dy, dz) = scene._cast(intr, pose, rows, cols)
    sz = (bz - o[2]) / dz
    return rows, cols, o[0] + sz * dx, o[1] + sz * dy, sz


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
    hits = rect_hits(scene, intr, pose, (x0, x0 + width, ytop - height, ytop, bz))
    if hits is None:
        return
    rows, cols, hx, hy, sz = hits
    bx, by = hx - x0, ytop - hy  # metres from the top-left
    region = zbuf[rows, cols]
    inside = (bx >= 0) & (bx < width) & (by >= 0) & (by < height) & (sz * scale < region)
    region[inside] = (sz * scale)[inside]
    if img is not None:
        # a camera pixel sees the texture over its footprint: average the texels under it
        # (box filter of the footprint's size, then bilinear), or the corners would sit on
        # the jagged edges of nearest-texel sampling, a third of a pixel off
        th, tw = tex.shape
        footprint_m = float(np.median(sz[inside])) / intr.fx if inside.any() else 0.0
        smooth = _box_blur(tex.astype(np.float32), round(footprint_m / (width / tw)))
        grey = 30.0 + _bilinear(smooth, by[inside] / height * th, bx[inside] / width * tw) * (
            195.0 / 255.0
        )  # printed: not pure black
        img[rows, cols][inside] = np.clip(grey + 0.5, 0, 255).astype(np.uint8)[:, None]


def board_albedo(scene: Any, albedo: np.ndarray) -> np.ndarray:
    """*albedo* (the depth camera's infrared reflectance) with the board's print where the
    depth camera sees it: white paper reflects the emitter's near-infrared, the print less."""
    h, w = albedo.shape
    shade = np.zeros((h, w, 1), np.uint8)
    seen = scene._bg_depth + 0.5  # the board's own depth passes, what stands before it not
    draw_board(scene, seen, shade, scene.depth_intr, scene.depth_pose, 1000.0)
    on = shade[..., 0] > 0
    return np.where(on, shade[..., 0].astype(np.float32) / 255.0, albedo).astype(np.float32)


def _box_blur(tex: np.ndarray, k: int) -> np.ndarray:
    """The mean of each k x k neighbourhood (edges repeated), k >= 1."""
    if k <= 1:
        return tex
    lo, hi = k // 2, k - 1 - k // 2
    pad = np.pad(tex, ((lo + 1, hi), (lo + 1, hi)), mode="edge")
    pad[0, :] = 0
    pad[:, 0] = 0
    c = pad.cumsum(axis=0).cumsum(axis=1)
    return (c[k:, k:] - c[:-k, k:] - c[k:, :-k] + c[:-k, :-k]) / (k * k)


def _bilinear(tex: np.ndarray, y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """*tex* at texel coordinates (y, x), texel centres at +0.5."""
    h, w = tex.shape
    y = np.clip(y - 0.5, 0, h - 1.001)
    x = np.clip(x - 0.5, 0, w - 1.001)
    i, j = y.astype(np.int64), x.astype(np.int64)
    fy, fx = y - i, x - j
    top = tex[i, j] * (1 - fx) + tex[i, j + 1] * fx
    bottom = tex[i + 1, j] * (1 - fx) + tex[i + 1, j + 1] * fx
    return top * (1 - fy) + bottom * fy
