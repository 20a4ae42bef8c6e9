"""Geometry for consumers of RGB-D streams (pure numpy, no I/O): calibration, deprojection,
registration and colored point clouds."""

from .calibration import CALIBRATION_VERSION, Calibration, Extrinsics
from .camera import deproject, project, ray_table
from .pointcloud import PointCloud, color_to_depth, depth_to_color, point_cloud
from .register import Registration, register

__all__ = [
    "CALIBRATION_VERSION",
    "Calibration",
    "Extrinsics",
    "PointCloud",
    "Registration",
    "color_to_depth",
    "deproject",
    "depth_to_color",
    "point_cloud",
    "project",
    "ray_table",
    "register",
]
