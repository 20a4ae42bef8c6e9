"""Small pure-numpy drawing helpers: depth colormaps and skeleton overlays (for snapshots)."""

from __future__ import annotations

import numpy as np

from .frames import BONES, Body, TrackingState

__all__ = ["colorize_depth", "draw_skeletons"]

# Anchor colours of a perceptual "turbo"-like ramp, BGR, near (red) to far (blue).
_ANCHORS = np.array(
    [
        [59, 18, 48],
        [228, 108, 65],
        [238, 196, 27],
        [91, 246, 164],
        [26, 226, 236],
        [36, 125, 250],
        [21, 36, 201],
        [4, 5, 122],
    ],
    np.float32,
)[::-1]
_LUT = np.stack(
    [
        np.interp(np.linspace(0, 1, 256), np.linspace(0, 1, len(_ANCHORS)), _ANCHORS[:, c])
        for c in range(3)
    ],
    axis=1,
).astype(np.uint8)


def colorize_depth(depth: np.ndarray, near: float = 500.0, far: float = 4500.0) -> np.ndarray:
    """Depth (mm) to BGR: near red, far blue, no measurement (0) black."""
    scaled = np.clip((depth.astype(np.float32) - near) / (far - near), 0.0, 1.0)
    out = _LUT[(scaled * 255).astype(np.uint8)]
    out[depth == 0] = 0
    return out


def _line(
    img: np.ndarray,
    p: tuple[float, float],
    q: tuple[float, float],
    color: tuple[int, int, int],
    width: int,
) -> None:
    n = int(max(abs(q[0] - p[0]), abs(q[1] - p[1]))) + 1
    xs = np.linspace(p[0], q[0], n).round().astype(int)
    ys = np.linspace(p[1], q[1], n).round().astype(int)
    h, w = img.shape[:2]
    for dx in range(-(width // 2), width // 2 + 1):
        for dy in range(-(width // 2), width // 2 + 1):
            x, y = xs + dx, ys + dy
            ok = (x >= 0) & (x < w) & (y >= 0) & (y < h)
            img[y[ok], x[ok]] = color


def draw_skeletons(img: np.ndarray, bodies: tuple[Body, ...], space: str = "color") -> np.ndarray:
    """Draw bones (green tracked, yellow inferred) and joints onto a copy of a BGR image."""
    out = np.ascontiguousarray(img[..., :3]).copy()
    width = max(1, out.shape[1] // 400)
    for body in bodies:
        xy = [j.color_xy if space == "color" else j.depth_xy for j in body.joints]
        for a, b in BONES:
            ja, jb = body.joints[a], body.joints[b]
            if TrackingState.NotTracked in (ja.state, jb.state):
                continue
            both = ja.state == jb.state == TrackingState.Tracked
            _line(out, xy[a], xy[b], (0, 255, 0) if both else (0, 255, 255), width)
        for j, p in zip(body.joints, xy, strict=True):
            if j.state != TrackingState.NotTracked:
                _line(out, p, p, (255, 255, 255), width + 4)
    return out
