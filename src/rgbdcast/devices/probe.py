"""``rgbdcast devices``: what can be served here, and what to install for the rest."""

from __future__ import annotations

import importlib.util
import platform

__all__ = ["probe_all"]


def _has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def probe_all(max_index: int = 4) -> list[str]:
    """One line per source kind: what was found, or the install step that is missing."""
    lines = ["mock: always available (rgbdcast serve --mock)"]
    if _has("cv2"):
        from .opencv import probe_cameras

        cams = probe_cameras(max_index)
        found = ", ".join(str(c) for c in cams) if cams else "none"
        lines.append(
            f"opencv cameras (indices 0-{max_index - 1}): {found}; video files, "
            "images and stream URLs: available"
        )
    else:
        lines.append("opencv: missing: pip install 'rgbdcast[webcam]'")
    if _has("pyrealsense2"):
        import pyrealsense2 as rs

        serials = [d.get_info(rs.camera_info.serial_number) for d in rs.context().query_devices()]
        lines.append(f"realsense: {', '.join(serials) if serials else 'no device connected'}")
    else:
        lines.append("realsense: missing: pip install 'rgbdcast[realsense]'")
    if platform.system() == "Windows":
        ok = _has("pykinect2")
        lines.append(
            "kinect2 (Windows SDK 2.0): "
            + (
                "pykinect2 present"
                if ok
                else "missing: install the Kinect for Windows SDK 2.0 and pykinect2 from its "
                "official repository (see the README)"
            )
        )
    else:
        ok = _has("pylibfreenect2")
        lines.append(
            "kinect2 (libfreenect2, no body tracking): "
            + (
                "pylibfreenect2 present"
                if ok
                else "missing: build libfreenect2, then pip install pylibfreenect2 (see the README)"
            )
        )
    return lines
