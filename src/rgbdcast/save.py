"""Write received frames to disk (``rgbdcast save``), one folder per device.

Color is written as PNG, depth and infrared as 16-bit grayscale PNG (millimetres for depth),
bodies as JSON; each file is named ``<stream>_<seq>.<ext>``. With ``--ply`` each frameset of depth
and color becomes one colored point cloud, ``cloud_<frameset>.ply``. A device's calibration goes
beside its files as ``calibration.json`` (the wire form, docs/protocol.md).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .codecs.body import bodies_to_json
from .codecs.png import encode_png
from .errors import ServerTimeout, UsageError
from .frames import Frame, StreamKind

__all__ = ["frame_to_file", "save_calibration", "save_frames", "save_point_clouds"]


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "device"


def frame_to_file(frame: Frame, folder: Path) -> Path:
    """Write one frame into *folder*; returns the file's path."""
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"{frame.kind.value}_{frame.seq:06d}"
    if frame.kind is StreamKind.body:
        path = folder / f"{stem}.json"
        doc = {
            "device": frame.device_id,
            "seq": frame.seq,
            "host_time_ns": frame.host_time_ns,
            "bodies": bodies_to_json(frame.bodies),
        }
        path.write_text(json.dumps(doc, indent=1))
    else:
        path = folder / f"{stem}.png"
        path.write_bytes(encode_png(frame.array, level=6))
    return path


def save_frames(
    subs: Sequence[Any],
    out: str | Path,
    count: int,
    timeout: float,
    progress: Callable[[str], Any] = lambda s: None,
) -> int:
    """Save *count* frames of each subscription under *out*; returns the number of files."""
    root = Path(out)
    deadline = time.monotonic() + timeout
    written = 0
    for sub in subs:
        folder = root / _safe(sub.device_id)
        for _ in range(count):
            left = deadline - time.monotonic()
            if left <= 0:
                raise ServerTimeout(f"no {sub.kind.value} frame from {sub.device_id} in time")
            try:
                frame = sub.get(timeout=left)
            except TimeoutError:
                raise ServerTimeout(
                    f"no {sub.kind.value} frame from {sub.device_id} in time"
                ) from None
            path = frame_to_file(frame, folder)
            written += 1
            progress(f"  {path}")
    return written


def save_calibration(client: Any, device_id: str, out: str | Path) -> Path | None:
    """Write the device's calibration as ``calibration.json`` in its folder (None: it has none)."""
    try:
        cal = client.calibration(device_id)
    except UsageError:
        return None
    folder = Path(out) / _safe(device_id)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "calibration.json"
    path.write_text(json.dumps(cal.to_dict(), indent=1))
    return path


def save_point_clouds(
    client: Any,
    device_ids: Sequence[str],
    out: str | Path,
    count: int,
    timeout: float,
    decimate: int = 1,
    progress: Callable[[str], Any] = lambda s: None,
) -> int:
    """Save *count* colored point clouds (binary PLY) of each device; returns the file count."""
    from .geometry.ply import ply_bytes

    root = Path(out)
    deadline = time.monotonic() + timeout
    written = 0
    for device_id in device_ids:
        client.calibration(device_id)  # no calibration: say so before waiting for frames
        folder = root / _safe(device_id)
        folder.mkdir(parents=True, exist_ok=True)
        with client.subscribe_frameset(device_id) as framesets:
            for _ in range(count):
                left = deadline - time.monotonic()
                try:
                    if left <= 0:
                        raise TimeoutError
                    frames = framesets.get(timeout=left)
                except TimeoutError:
                    raise ServerTimeout(
                        f"no depth and color frameset from {device_id} in time"
                    ) from None
                cloud = client.point_cloud(frames, decimate=decimate)
                depth = frames[StreamKind.depth]
                path = folder / f"cloud_{depth.frameset_id:06d}.ply"
                comments = (f"rgbdcast device {device_id} frameset {depth.frameset_id}",)
                path.write_bytes(ply_bytes(cloud, comments))
                written += 1
                progress(f"  {path} ({len(cloud)} points)")
    return written
