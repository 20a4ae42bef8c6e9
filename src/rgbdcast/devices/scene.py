"""A deterministic synthetic RGB-D scene for the mock device (pure numpy).

How this works: the scene is a room seen by a Kinect-like camera 1 m above the floor: a back wall
at 4 m, the floor, a static shelf, a box sliding left and right, a bouncing ball and a person who
sways, steps and waves. Its state at time ``t`` is a function of ``t`` only, so frame *n* is the
same on every run. Depth and color are rendered from the same 3-D geometry through each camera's
intrinsics, and the skeleton is the geometry the person is drawn from, so every joint projects
onto the person in both images. Objects are drawn as depth-tested sphere "stamps" (a limb is a
row of spheres), which keeps a 1080p frame to a few milliseconds of numpy.
"""

from __future__ import annotations

import math

import numpy as np

from ..frames import Body, HandState, Intrinsics, Joint, JointType, TrackingState
from .sceneboard import rect_hits

__all__ = [
    "KINECT_COLOR",
    "KINECT_DEPTH",
    "Scene",
    "mock_depth_to_color",
    "rotation_xyz",
    "scaled",
    "world_pose",
]

KINECT_DEPTH = Intrinsics(width=512, height=424, fx=365.5, fy=365.5, cx=256.0, cy=212.0)
KINECT_COLOR = Intrinsics(width=1920, height=1080, fx=1081.4, fy=1081.4, cx=959.5, cy=539.5)

CAMERA_HEIGHT = 1.0  # metres above the floor
WALL_Z = 4.0
TRACKING_ID = 72057594037928000 + 17

_J = JointType
# Joint positions relative to SpineBase (metres; +x image right, +y up, +z away from camera).
_REST: dict[JointType, tuple[float, float, float]] = {
    _J.SpineBase: (0.0, 0.0, 0.0),
    _J.SpineMid: (0.0, 0.30, 0.0),
    _J.SpineShoulder: (0.0, 0.50, 0.0),
    _J.Neck: (0.0, 0.57, 0.0),
    _J.Head: (0.0, 0.70, 0.0),
    _J.ShoulderLeft: (-0.19, 0.47, 0.0),
    _J.ShoulderRight: (0.19, 0.47, 0.0),
    _J.HipLeft: (-0.10, -0.04, 0.0),
    _J.HipRight: (0.10, -0.04, 0.0),
}
_RADIUS = {
    "torso": 0.15,
    "head": 0.11,
    "upper": 0.055,
    "lower": 0.045,
    "hand": 0.045,
    "thigh": 0.075,
    "shin": 0.055,
    "foot": 0.045,
}
_SKIN = (120, 150, 200)  # BGR
_SHIRT = (60, 90, 200)
_TROUSERS = (90, 60, 40)


def scaled(base: Intrinsics, width: int, height: int) -> Intrinsics:
    """*base* intrinsics rescaled to another resolution of the same sensor."""
    sx, sy = width / base.width, height / base.height
    return Intrinsics(
        width=width,
        height=height,
        fx=base.fx * sx,
        fy=base.fy * sy,
        cx=(base.cx + 0.5) * sx - 0.5,
        cy=(base.cy + 0.5) * sy - 0.5,
    )


Vec3 = tuple[float, float, float]


def _rot(v: Vec3, angle: float) -> Vec3:
    """Rotate *v* in the image plane (x, y) by *angle* radians."""
    c, s = math.cos(angle), math.sin(angle)
    return (v[0] * c - v[1] * s, v[0] * s + v[1] * c, v[2])


def _add(a: Vec3, b: Vec3) -> Vec3:
    return (a[0] + b[0], a[1] + b[1], a[2] + b[2])


MOCK_DEPTH_TO_COLOR_ROTATION_DEG = (0.35, -0.25, 0.15)
"""The mock color camera's small rotation about x, y, z (degrees), as a real rig's would be."""
MOCK_COLOR_CENTER = (-0.052, 0.0015, 0.0008)
"""Where the mock color camera sits in the depth camera's optical frame (metres): 5.2 cm to the
side, as on a Kinect v2."""


def rotation_xyz(ax_deg: float, ay_deg: float, az_deg: float) -> np.ndarray:
    """``Rz @ Ry @ Rx`` from angles in degrees about the x, y and z axes."""
    ax, ay, az = (math.radians(a) for a in (ax_deg, ay_deg, az_deg))
    rx = np.array([[1, 0, 0], [0, math.cos(ax), -math.sin(ax)], [0, math.sin(ax), math.cos(ax)]])
    ry = np.array([[math.cos(ay), 0, math.sin(ay)], [0, 1, 0], [-math.sin(ay), 0, math.cos(ay)]])
    rz = np.array([[math.cos(az), -math.sin(az), 0], [math.sin(az), math.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def mock_depth_to_color() -> tuple[np.ndarray, np.ndarray]:
    """The mock's ground truth ``(R, t)``: ``p_color = R @ p_depth + t`` in OpenCV optical axes."""
    r = rotation_xyz(*MOCK_DEPTH_TO_COLOR_ROTATION_DEG)
    return r, -r @ np.asarray(MOCK_COLOR_CENTER)


def world_pose(
    x: float, y: float, z: float, rx: float, ry: float, rz: float
) -> tuple[np.ndarray, np.ndarray]:
    """A depth camera's pose in the shared world (``serve --mock-pose``): ``p_world = R @
    p_depth + t``, optical axes, metres; R = Rz·Ry·Rx from degrees about the world axes. The
    world is the optical frame of a camera at the zero pose (x right, y down, z forward)."""
    return rotation_xyz(rx, ry, rz), np.array([x, y, z], np.float64)


_FLIP = np.diag([1.0, -1.0, 1.0])  # scene axes (y up) <-> optical axes (y down)


class Scene:
    """The synthetic room; ``pose(t)``, ``depth(t)``, ``color(t)``, ``infrared(depth)``.

    The depth camera sits at ``rig_from_depth`` in the world (default: the origin, looking down
    the room), the color camera at ``depth_to_color`` from it; each camera's pose maps a scene
    point ``p`` (y up) to ``M @ p + T`` in that camera (y up too). Every image is ray-cast or
    stamped from the same 3-D geometry, so registration and multi-camera fusion have exact
    answers.
    """

    def __init__(
        self,
        depth_intr: Intrinsics,
        color_intr: Intrinsics,
        seed: int = 0,
        depth_to_color: tuple[np.ndarray, np.ndarray] | None = None,
        rig_from_depth: tuple[np.ndarray, np.ndarray] | None = None,
        board: tuple[np.ndarray, float, float] | None = None,
    ) -> None:
        self.depth_intr = depth_intr
        self.color_intr = color_intr
        wr, wt = rig_from_depth if rig_from_depth is not None else (np.eye(3), np.zeros(3))
        wr, wt = np.asarray(wr, np.float64), np.asarray(wt, np.float64)
        m_d = _FLIP @ wr.T @ _FLIP  # p_depth = R^T (p_world - t), both in scene axes
        self.depth_pose = (m_d, -m_d @ (_FLIP @ wt))
        rot, tr = depth_to_color if depth_to_color is not None else (np.eye(3), np.zeros(3))
        m_c = _FLIP @ np.asarray(rot, np.float64) @ _FLIP
        self.color_pose = (
            m_c @ m_d,
            m_c @ self.depth_pose[1] + _FLIP @ np.asarray(tr, np.float64),
        )
        self.board = board
        """The calibration board on its stand: its texture (uint8, top-left first), its width
        and height in metres (:mod:`.sceneboard` draws it)."""
        rng = np.random.default_rng(seed)
        self._bg_depth = self._background_z(depth_intr, self.depth_pose)[0] * 1000.0
        self._bg_color, self._bg_color_z = self._background_color(color_intr, rng)
        h, w = depth_intr.height, depth_intr.width
        self._noise = rng.normal(0.0, 1.0, (4, h, w)).astype(np.float32)
        self._albedo = (0.75 + 0.25 * rng.random((h, w))).astype(np.float32)
        if board is not None:  # static: drawn into the backgrounds (and IR albedo) once
            from .sceneboard import board_albedo, draw_board

            draw_board(self, self._bg_depth, None, depth_intr, self.depth_pose, 1000.0)
            draw_board(self, self._bg_color_z, self._bg_color, color_intr, self.color_pose, 1.0)
            self._albedo = board_albedo(self, self._albedo)

    # -- geometry ---------------------------------------------------------------------------
    @staticmethod
    def _rays(intr: Intrinsics) -> tuple[np.ndarray, np.ndarray]:
        u = (np.arange(intr.width, dtype=np.float32) - intr.cx) / intr.fx
        v = (intr.cy - np.arange(intr.height, dtype=np.float32)) / intr.fy
        return u[None, :], v[:, None]

    @staticmethod
    def _to_cam(pose: tuple[np.ndarray, np.ndarray], p: tuple[float, ...]) -> Vec3:
        q = pose[0] @ np.asarray(p[:3], np.float64) + pose[1]
        return (float(q[0]), float(q[1]), float(q[2]))

    def _cast(
        self, intr: Intrinsics, pose: tuple[np.ndarray, np.ndarray], rows: slice, cols: slice
    ) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
        """The origin and per-pixel direction (scene axes) of the rays of pixels [rows, cols]:
        a hit at parameter ``s`` lies at camera depth ``s``."""
        m, tr = pose
        u, v = self._rays(intr)
        u, v = u[:, cols], v[rows, :]
        mt = m.T.astype(np.float32)
        d = np.broadcast_arrays(*(mt[i, 0] * u + mt[i, 1] * v + mt[i, 2] for i in range(3)))
        return (-m.T @ tr).astype(np.float32), tuple(d)

    def _background_z(
        self, intr: Intrinsics, pose: tuple[np.ndarray, np.ndarray]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Camera depth (m) of the wall (tilted plane), floor and shelf, and the scene point hit."""
        o, (dx, dy, dz) = self._cast(intr, pose, slice(None), slice(None))
        with np.errstate(divide="ignore", invalid="ignore"):
            wall = (WALL_Z + 0.05 * o[0] - o[2]) / (dz - 0.05 * dx)
            floor = np.where(dy < 0, (-CAMERA_HEIGHT - o[1]) / np.minimum(dy, -1e-9), np.inf)
            s = np.minimum(np.where(wall > 0, wall, np.inf), floor)
            sh = (3.2 - o[2]) / dz
        hx, hy = o[0] + sh * dx, o[1] + sh * dy
        shelf = (hx > -1.9) & (hx < -1.2) & (hy > -1.0) & (hy < 0.4) & (sh < s)
        s = np.where(shelf, sh, s).astype(np.float32)
        pts = np.stack([o[0] + s * dx, o[1] + s * dy, o[2] + s * dz])
        return s, pts, shelf

    def _background_color(
        self, intr: Intrinsics, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        z, (px, py, pz), is_shelf = self._background_z(intr, self.color_pose)
        img = np.empty((intr.height, intr.width, 3), np.uint8)
        is_floor = py < -CAMERA_HEIGHT + 1e-3
        # wall: warm beige with a soft horizontal gradient and a framed picture
        shade = (1.0 - 0.25 * np.clip(np.abs(px / np.maximum(pz, 1e-3)), 0, 1)).astype(np.float32)
        wall = np.stack([170 * shade, 190 * shade, 205 * shade], axis=-1)
        picture = (px > 0.4) & (px < 1.4) & (py > 0.3) & (py < 1.0)
        stripes = (px * 8).astype(np.int32) % 2 == 0
        wall = np.where(
            picture[..., None], np.where(stripes[..., None], [40, 120, 60], [200, 200, 80]), wall
        )
        # floor: wooden boards
        board = ((pz * 4).astype(np.int32) % 2 == 0) ^ ((px * 1.5).astype(np.int32) % 2 == 0)
        floor = np.where(board[..., None], [60, 100, 140], [50, 85, 125])
        shelf = np.array([40, 60, 90])
        img[:] = np.where(is_shelf[..., None], shelf, np.where(is_floor[..., None], floor, wall))
        # a little sensor grain so JPEG has something real to do
        grain = rng.integers(-6, 7, img.shape[:2], dtype=np.int16)[..., None]
        return np.clip(img.astype(np.int16) + grain, 0, 255).astype(np.uint8), z

    # -- the person -------------------------------------------------------------------------
    def pose(self, t: float) -> dict[JointType, tuple[float, float, float]]:
        """Camera-space joint positions (metres) at time *t* seconds."""
        base = (
            0.55 * math.sin(2 * math.pi * t / 9.0),
            -CAMERA_HEIGHT + 0.95,
            2.4 + 0.35 * math.sin(2 * math.pi * t / 13.0),
        )
        sway = 0.05 * math.sin(2 * math.pi * t / 3.0)
        p: dict[JointType, tuple[float, float, float]] = {}
        for jt, rel in _REST.items():
            p[jt] = _add(base, _rot(rel, sway))
        sl, sr = p[_J.ShoulderLeft], p[_J.ShoulderRight]
        # right arm waves above the head; left arm hangs and swings
        wave = 0.6 * math.sin(2 * math.pi * t / 1.6)
        p[_J.ElbowRight] = _add(sr, _rot((0.27, 0.0, 0.0), 0.5 + sway))
        p[_J.WristRight] = _add(p[_J.ElbowRight], _rot((0.0, 0.25, -0.02), -wave))
        swing = 0.25 * math.sin(2 * math.pi * t / 2.2)
        p[_J.ElbowLeft] = _add(sl, _rot((0.0, -0.27, 0.0), swing))
        p[_J.WristLeft] = _add(p[_J.ElbowLeft], _rot((0.0, -0.25, -0.03), swing * 1.3))
        for side, wrist, elbow in (
            ("Right", _J.WristRight, _J.ElbowRight),
            ("Left", _J.WristLeft, _J.ElbowLeft),
        ):
            w, e = p[wrist], p[elbow]
            d = ((w[0] - e[0]) / 0.25, (w[1] - e[1]) / 0.25, (w[2] - e[2]) / 0.25)
            hand = _add(w, (0.08 * d[0], 0.08 * d[1], 0.08 * d[2]))
            p[JointType[f"Hand{side}"]] = hand
            p[JointType[f"HandTip{side}"]] = _add(hand, (0.07 * d[0], 0.07 * d[1], 0.07 * d[2]))
            sgn = 1.0 if side == "Right" else -1.0
            p[JointType[f"Thumb{side}"]] = _add(hand, (-0.04 * sgn, 0.02, -0.03))
        step = 0.18 * math.sin(2 * math.pi * t / 2.2)
        for side, hip, sgn in (("Left", _J.HipLeft, 1.0), ("Right", _J.HipRight, -1.0)):
            knee = _add(p[hip], (0.0, -0.45, -0.05 - sgn * step * 0.5))
            ankle = _add(knee, (0.0, -0.44, 0.03 + sgn * step * 0.3))
            p[JointType[f"Knee{side}"]] = knee
            p[JointType[f"Ankle{side}"]] = ankle
            p[JointType[f"Foot{side}"]] = _add(ankle, (0.0, -0.05, -0.12))
        return p

    def bodies(self, t: float) -> tuple[Body, ...]:
        pose = self.pose(t)
        joints = []
        for jt in JointType:
            x, y, z = self._to_cam(self.depth_pose, pose[jt])  # the depth camera's space
            state = TrackingState.Tracked
            if jt in (_J.HandTipLeft, _J.ThumbLeft) and math.sin(t) > 0.6:
                state = TrackingState.Inferred
            joints.append(
                Joint(
                    type=jt,
                    position=(x, y, z),
                    state=state,
                    color_xy=self.color_intr.project(*self._to_cam(self.color_pose, pose[jt])),
                    depth_xy=self.depth_intr.project(x, y, z),
                )
            )
        closed = math.sin(2 * math.pi * t / 1.6) > 0.5
        return (
            Body(
                tracking_id=TRACKING_ID,
                joints=tuple(joints),
                right_hand=HandState.Closed if closed else HandState.Open,
                left_hand=HandState.Open,
            ),
        )

    def _capsules(self, t: float) -> list[tuple[Vec3, Vec3, float, tuple[int, int, int]]]:
        p = self.pose(t)
        caps = []
        for a, b, r, col in (
            (_J.SpineBase, _J.SpineShoulder, "torso", _SHIRT),
            (_J.Neck, _J.Head, "head", _SKIN),
            (_J.HipLeft, _J.KneeLeft, "thigh", _TROUSERS),
            (_J.KneeLeft, _J.AnkleLeft, "shin", _TROUSERS),
            (_J.AnkleLeft, _J.FootLeft, "foot", (30, 30, 30)),
            (_J.HipRight, _J.KneeRight, "thigh", _TROUSERS),
            (_J.KneeRight, _J.AnkleRight, "shin", _TROUSERS),
            (_J.AnkleRight, _J.FootRight, "foot", (30, 30, 30)),
            (_J.ShoulderLeft, _J.ElbowLeft, "upper", _SHIRT),
            (_J.ElbowLeft, _J.WristLeft, "lower", _SKIN),
            (_J.WristLeft, _J.HandTipLeft, "hand", _SKIN),
            (_J.ShoulderRight, _J.ElbowRight, "upper", _SHIRT),
            (_J.ElbowRight, _J.WristRight, "lower", _SKIN),
            (_J.WristRight, _J.HandTipRight, "hand", _SKIN),
            (_J.ShoulderLeft, _J.ShoulderRight, "upper", _SHIRT),
        ):
            caps.append((p[a], p[b], _RADIUS[r], col))
        return caps

    def _objects(self, t: float) -> tuple[tuple[float, ...], tuple[float, ...]]:
        bx = -0.9 + 0.5 * math.sin(2 * math.pi * t / 6.0)
        box = (bx - 0.25, bx + 0.25, -CAMERA_HEIGHT, -CAMERA_HEIGHT + 0.5, 3.0)
        phase = (t / 1.2) % 1.0
        by = -CAMERA_HEIGHT + 0.12 + 0.9 * 4 * phase * (1 - phase)
        ball = (1.0 + 0.3 * math.sin(2 * math.pi * t / 5.0), by, 2.0, 0.12)
        return box, ball

    # -- rendering --------------------------------------------------------------------------
    @staticmethod
    def _stamp(
        zbuf: np.ndarray,
        img: np.ndarray | None,
        intr: Intrinsics,
        c: Vec3,
        r: float,
        color: tuple[int, int, int] | None,
        scale: float,
    ) -> None:
        """Draw a sphere of radius *r* at *c* (camera axes, y up) into *zbuf* (and *img*)."""
        x, y, z = c
        if z <= r:
            return
        u, v = intr.project(x, y, z)
        rp = r * intr.fx / z
        x0, x1 = max(int(u - rp), 0), min(int(u + rp) + 2, intr.width)
        y0, y1 = max(int(v - rp), 0), min(int(v + rp) + 2, intr.height)
        if x0 >= x1 or y0 >= y1:
            return
        gx = (np.arange(x0, x1, dtype=np.float32) - u)[None, :]
        gy = (np.arange(y0, y1, dtype=np.float32) - v)[:, None]
        d2 = (gx * gx + gy * gy) / (rp * rp)
        inside = d2 < 1.0
        zs = (z - r * np.sqrt(np.maximum(1.0 - d2, 0.0))) * scale
        region = zbuf[y0:y1, x0:x1]
        closer = inside & (zs < region)
        region[closer] = zs[closer]
        if img is not None and color is not None:
            shade = (1.0 - 0.45 * d2[closer])[:, None] * np.asarray(color, np.float32)
            img[y0:y1, x0:x1][closer] = shade.astype(np.uint8)

    def _box(
        self,
        box: tuple[float, ...],
        zbuf: np.ndarray,
        img: np.ndarray | None,
        intr: Intrinsics,
        pose: tuple[np.ndarray, np.ndarray],
        scale: float,
    ) -> None:
        """Ray-cast the box's front face (a rectangle at z = bz) inside its projected bounds."""
        x0, x1, y0, y1, bz = box
        hits = rect_hits(self, intr, pose, (x0, x1, y0, y1, bz))
        if hits is None:
            return
        rows, cols, hx, hy, sz = hits
        region = zbuf[rows, cols]
        closer = (hx >= x0) & (hx < x1) & (hy >= y0) & (hy < y1) & (sz * scale < region)
        region[closer] = (sz * scale)[closer]
        if img is not None:
            img[rows, cols][closer] = (30, 140, 230)

    def _draw(
        self,
        t: float,
        zbuf: np.ndarray,
        img: np.ndarray | None,
        intr: Intrinsics,
        scale: float,
        pose: tuple[np.ndarray, np.ndarray],
    ) -> None:
        box, ball = self._objects(t)
        self._box(box, zbuf, img, intr, pose, scale)
        bx, by, bzz, br = ball
        self._stamp(zbuf, img, intr, self._to_cam(pose, (bx, by, bzz)), br, (40, 40, 220), scale)
        for a, b, r, col in self._capsules(t):
            a, b = self._to_cam(pose, a), self._to_cam(pose, b)
            # spheres 0.7 radii apart, whatever the camera: both see the same solid
            n = max(int(math.dist(a, b) / (0.7 * r)), 1)
            for k in range(n + 1):
                f = k / n
                c = (a[0] + (b[0] - a[0]) * f, a[1] + (b[1] - a[1]) * f, a[2] + (b[2] - a[2]) * f)
                self._stamp(zbuf, img, intr, c, r, col, scale)

    def depth_m(self, t: float) -> np.ndarray:
        """The exact depth image (metres along the depth camera's axis, float32; inf = none)."""
        z = self._bg_depth.copy()
        self._draw(t, z, None, self.depth_intr, 1000.0, self.depth_pose)
        return z / 1000.0

    def depth(self, t: float, index: int = 0) -> np.ndarray:
        """Depth in millimetres (uint16), with distance-dependent sensor noise."""
        z = self._bg_depth.copy()
        self._draw(t, z, None, self.depth_intr, 1000.0, self.depth_pose)
        # 4 patterns shifted sideways in turn: 64 framesets before the noise repeats
        k = len(self._noise)
        noise = np.roll(self._noise[index % k], (index // k) % 16 * 29, axis=1)
        z += noise * (z * z) * 0.5e-6  # sigma ~8 mm at 4 m, growing with distance like ToF
        out = z.astype(np.uint16)
        out[z > 8000] = 0
        return out

    def color_and_z(self, t: float) -> tuple[np.ndarray, np.ndarray]:
        """The color image (BGR uint8) and its exact depth (metres along the color camera's
        axis): the ground truth a registration is measured against."""
        img = self._bg_color.copy()
        zbuf = self._bg_color_z.copy()
        self._draw(t, zbuf, img, self.color_intr, 1.0, self.color_pose)
        return img, zbuf

    def color(self, t: float) -> np.ndarray:
        """BGR uint8, seen from the color camera."""
        return self.color_and_z(t)[0]

    def infrared(self, depth: np.ndarray) -> np.ndarray:
        """Active infrared (uint16): reflected light falls with the square of distance."""
        z = np.maximum(depth.astype(np.float32), 300.0) / 1000.0
        ir = self._albedo * (9000.0 / (z * z))
        ir[depth == 0] = 0
        return np.clip(ir, 0, 65535).astype(np.uint16)
