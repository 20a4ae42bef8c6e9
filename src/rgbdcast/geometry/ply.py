"""Point clouds as binary PLY (pure: bytes out, no files).

Binary little-endian PLY with float32 ``x y z`` (metres) and uchar ``red green blue`` per vertex:
what Open3D, CloudCompare, MeshLab and plyfile read. An organised cloud is written without its
empty pixels.
"""

from __future__ import annotations

import numpy as np

from .pointcloud import PointCloud

__all__ = ["PLY_VERTEX", "ply_bytes"]

PLY_VERTEX = np.dtype(
    [("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("red", "u1"), ("green", "u1"), ("blue", "u1")]
)


def ply_bytes(cloud: PointCloud, comments: tuple[str, ...] = ()) -> bytes:
    """The whole PLY file of *cloud*; *comments* go into the header (one line each)."""
    if cloud.mask is not None:
        pts, rgb = cloud.points[cloud.mask], cloud.colors[cloud.mask]
    else:
        pts, rgb = cloud.points.reshape(-1, 3), cloud.colors.reshape(-1, 3)
    vertices = np.empty(len(pts), PLY_VERTEX)
    vertices["x"], vertices["y"], vertices["z"] = pts[:, 0], pts[:, 1], pts[:, 2]
    vertices["red"], vertices["green"], vertices["blue"] = rgb[:, 0], rgb[:, 1], rgb[:, 2]
    lines = ["ply", "format binary_little_endian 1.0"]
    lines += [f"comment {c}".replace("\n", " ") for c in comments]
    if cloud.frame_id:
        lines.append(f"comment frame_id {cloud.frame_id}")
    lines += [f"element vertex {len(vertices)}"]
    lines += [f"property float {a}" for a in "xyz"]
    lines += [f"property uchar {c}" for c in ("red", "green", "blue")]
    lines.append("end_header")
    return ("\n".join(lines) + "\n").encode("ascii") + vertices.tobytes()
