"""OpenCV sources (``[webcam]`` extra): a camera index, a stream URL, a video file, a still image.

Each is one color stream (BGR), calibrated only if the user gives a file (``calibration=``,
:mod:`.calibfile`). Cameras and URLs deliver at their own pace; a video file is
played at its own frame rate (or ``fps``), looping or not; a still image is served at ``fps``
(Camera2TCP's ``SimpleImage``). What the source actually delivers (size, rate) is what
``streams`` reports, so who/me shows it.

A Motion-JPEG video file or stream URL (an IP camera's MJPEG over HTTP) is read as its JPEG
packets (OpenCV's raw mode) and each frame carries
its JPEG as ``Frame.encoded``: a server serving JPEG sends it as it is, and the pixels are decoded
only if someone on the server reads them.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DeviceError, UsageError
from ..frames import Encoded, Frame, StreamKind
from ..geometry.calibration import Calibration
from .base import StreamInfo, ThreadedDevice, require, wait_until
from .calibfile import fit_to_size, load_calibration_file

__all__ = ["OpenCVDevice"]

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".pgm", ".ppm"}


def _cv2() -> Any:
    """Import OpenCV (naming the extra if missing) with its console warnings silenced."""
    os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
    cv2 = require("cv2", "webcam")
    logging_api = getattr(getattr(cv2, "utils", None), "logging", None)
    if logging_api is not None:
        logging_api.setLogLevel(logging_api.LOG_LEVEL_ERROR)
    return cv2


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text).strip("-")[:40] or "source"


class OpenCVDevice(ThreadedDevice):
    """A color source read through OpenCV.

    *source* is a camera index (``0``), a URL (``rtsp://...``, ``http://...``), a video file or
    an image file. *size* ``(w, h)`` and *fps* are requests to a camera, the playback rate of a
    file, or the rate of an image. *loop* replays a file when it ends.
    """

    kind = "opencv"

    def __init__(
        self,
        source: int | str,
        *,
        device_id: str | None = None,
        name: str | None = None,
        fps: float | None = None,
        size: tuple[int, int] | None = None,
        loop: bool = True,
        calibration: str | Path | None = None,
    ) -> None:
        super().__init__()
        self.cv2 = _cv2()
        if fps is not None and not 0 < fps <= 1000:
            raise UsageError(f"fps must be in (0, 1000], got {fps}")
        self.source: int | str = int(source) if str(source).isdigit() else source
        text = str(self.source)
        self.is_camera = isinstance(self.source, int)
        self.is_url = not self.is_camera and "://" in text
        path = Path(text)
        self.is_image = (
            not self.is_camera and not self.is_url and path.suffix.lower() in IMAGE_SUFFIXES
        )
        if not (self.is_camera or self.is_url) and not path.exists():
            raise DeviceError(f"{text}: no such file")
        if self.is_camera:
            self.id = device_id or f"cam{self.source}"
        elif self.is_url:
            self.id = device_id or f"url-{_slug(text.split('://', 1)[1])}"
        else:
            self.id = device_id or f"file-{_slug(path.name)}"
        self.name = name or (f"camera {self.source}" if self.is_camera else text)
        self.requested_fps, self.requested_size, self.loop = fps, size, loop
        self._cap: Any = None
        self._image: np.ndarray | None = None
        self._info = StreamInfo(kind=StreamKind.color, fps=fps or 30.0, dtype="|u1", units="bgr8")
        self._seq = 0
        self._t0 = 0
        self.finished = False
        self.raw_jpeg = False
        """True while a Motion-JPEG file is read as its JPEG packets (never decoded here)."""
        self._calibration = (
            load_calibration_file(calibration, self.id) if calibration is not None else None
        )

    def calibration(self) -> Calibration | None:
        """The user's calibration file (scaled to what the camera delivers), or None: without
        a file nothing is claimed."""
        cal = self._calibration
        if cal is None or not self._info.width:
            return cal
        return fit_to_size(cal, self._info.width, self._info.height)

    @property
    def streams(self) -> dict[StreamKind, StreamInfo]:
        return {StreamKind.color: self._info}

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "source": str(self.source), "body_tracking": False}

    def _open(self) -> None:
        cv2 = self.cv2
        self._seq, self.finished = 0, False
        if self.is_image:
            img = cv2.imread(str(self.source), cv2.IMREAD_COLOR)
            if img is None:
                raise DeviceError(f"{self.source}: OpenCV cannot read this image")
            self._image = img
            h, w = img.shape[:2]
            self._info = StreamInfo(
                kind=StreamKind.color,
                width=w,
                height=h,
                fps=self.requested_fps or 30.0,
                dtype="|u1",
                units="bgr8",
            )
            self._t0 = time.monotonic_ns()
            return
        cap = cv2.VideoCapture(self.source)
        if not cap.isOpened():
            cap.release()
            what = f"camera {self.source}" if self.is_camera else str(self.source)
            raise DeviceError(f"{what} did not open (is it connected, and not in use?)")
        if self.is_camera and self.requested_size:
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.requested_size[0])
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.requested_size[1])
        if self.is_camera and self.requested_fps:
            cap.set(cv2.CAP_PROP_FPS, self.requested_fps)
        w = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH))
        h = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        native = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        fps = (
            self.requested_fps if (self.requested_fps and not self.is_camera) else (native or 30.0)
        )
        fourcc = int(cap.get(cv2.CAP_PROP_FOURCC) or 0).to_bytes(4, "little", signed=False)
        # a Motion-JPEG file or stream: read its packets as they are (FFmpeg's raw mode; a
        # camera's own MJPEG would need V4L2's, untried without a camera)
        self.raw_jpeg = (
            not self.is_camera
            and fourcc.upper() == b"MJPG"
            and w > 0
            and h > 0
            and bool(cap.set(cv2.CAP_PROP_FORMAT, -1))
        )
        notes: dict[str, Any] = {"source_fps": native}
        if self.raw_jpeg:
            notes["source_codec"] = "jpeg"
        self._info = StreamInfo(
            kind=StreamKind.color,
            width=w,
            height=h,
            fps=fps,
            dtype="|u1",
            units="bgr8",
            notes=notes,
        )
        self._cap = cap
        self._t0 = time.monotonic_ns()

    def _close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None

    def _paced(self) -> bool:
        return self.is_image or not (self.is_camera or self.is_url)

    def _capture(self, stop: threading.Event) -> list[Frame]:
        if self.finished:
            stop.wait()
            return []
        if self._paced():
            deadline = self._t0 + int(self._seq * 1e9 / self._info.fps)
            if not wait_until(deadline, stop):
                return []
        if self._image is not None:
            img = self._image.copy()
        else:
            ok, img = self._cap.read()
            if not ok and not (self.is_camera or self.is_url):
                if not self.loop:
                    self.finished = True  # a file that ended is not a failure
                    return []
                self._cap.set(self.cv2.CAP_PROP_POS_FRAMES, 0)
                ok, img = self._cap.read()
            if not ok or img is None:
                raise DeviceError(f"{self.name} stopped delivering frames")
            if self.raw_jpeg:
                return [self._frame(None, self._packet(img))]
        if img.ndim == 2:
            img = self.cv2.cvtColor(img, self.cv2.COLOR_GRAY2BGR)
        h, w = img.shape[:2]
        if (w, h) != (self._info.width, self._info.height):
            self._info = StreamInfo(
                kind=StreamKind.color,
                width=w,
                height=h,
                fps=self._info.fps,
                dtype="|u1",
                units="bgr8",
                notes=self._info.notes,
            )
        return [self._frame(img, None)]

    def _packet(self, packet: np.ndarray) -> Encoded:
        """One JPEG packet of a Motion-JPEG file, decoded only if someone reads the pixels."""
        shape = (self._info.height, self._info.width, 3)
        return Encoded(
            codec="jpeg", payload=packet.tobytes(), shape=shape, dtype="|u1", decode=self._decode
        )

    def _decode(self, jpeg: bytes) -> np.ndarray:
        cv2 = self.cv2
        flags = cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION
        img = cv2.imdecode(np.frombuffer(jpeg, np.uint8), flags)
        if img is None:
            raise DeviceError(f"{self.name}: a JPEG packet does not decode")
        return np.asarray(img)

    def _frame(self, img: np.ndarray | None, encoded: Encoded | None) -> Frame:
        seq = self._seq
        self._seq += 1
        pixels: dict[str, Any] = {"data": img} if img is not None else {"encoded": encoded}
        return Frame(
            device_id=self.id,
            kind=StreamKind.color,
            seq=seq,
            **pixels,
            device_time_ns=int(seq * 1e9 / self._info.fps),
            host_time_ns=time.time_ns(),
            frameset_id=seq,
        )


def probe_cameras(max_index: int = 4) -> list[int]:
    """Camera indices that open on this machine (quietly)."""
    cv2 = _cv2()
    found = []
    for index in range(max_index):
        cap = cv2.VideoCapture(index)
        if cap.isOpened():
            found.append(index)
        cap.release()
    return found
