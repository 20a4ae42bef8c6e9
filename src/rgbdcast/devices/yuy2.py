"""YUY2 frames from a source: a color source's native layout (Kinect v2, a webcam's YUYV).

A source that delivers YUY2 (``Y0 U Y1 V`` per pixel pair, BT.601 video range, as the Kinect v2
SDK's raw color frame and V4L2's ``YUYV`` are) hands its frame on as a source-encoded frame:
``Frame(encoded=yuy2_source(...))``. Nothing converts it unless someone reads its pixels (then
they are BGR, converted once, with OpenCV where it is installed). The codecs encode from it
directly where they can (:mod:`rgbdcast.codecs.yuv`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import DeviceError
from ..frames import Encoded

__all__ = ["YUY2", "bgr_to_yuy2", "yuy2_source", "yuy2_to_bgr"]

YUY2 = "yuy2"
"""The codec name a YUY2 source frame carries (``Frame.encoded.codec``)."""


def yuy2_source(data: Any, width: int, height: int) -> Encoded:
    """A YUY2 image (``width * height * 2`` bytes, copied) as a frame's source encoding: it
    decodes to ``height x width x 3`` BGR."""
    payload = bytes(memoryview(data).cast("B"))
    if width % 2 or len(payload) != width * height * 2:
        raise DeviceError(f"YUY2 {width}x{height} needs an even width and {width * height * 2} B")
    return Encoded(
        codec=YUY2,
        payload=payload,
        shape=(height, width, 3),
        dtype="|u1",
        decode=lambda raw: yuy2_to_bgr(raw, width, height),
    )


def yuy2_to_bgr(data: Any, width: int, height: int) -> np.ndarray:
    """BGR pixels of a YUY2 image (BT.601 video range): OpenCV's conversion where it is
    installed (under a millisecond at 1080p), else numpy's (the same to within 1)."""
    cv2: Any
    try:
        import cv2
    except ImportError:  # OpenCV is the [webcam] extra
        cv2 = None
    if cv2 is not None:
        packed = np.frombuffer(data, np.uint8).reshape(height, width, 2)
        return np.asarray(cv2.cvtColor(packed, cv2.COLOR_YUV2BGR_YUY2))
    out = np.empty((height, width, 3), np.uint8)
    w = np.frombuffer(data, np.uint8).reshape(height, width // 2, 4).astype(np.float32)
    y = np.stack([w[..., 0], w[..., 2]], axis=-1).reshape(height, width) - 16.0
    d = np.repeat(w[..., 1] - 128.0, 2, axis=1)
    e = np.repeat(w[..., 3] - 128.0, 2, axis=1)
    c = 1.164383 * y
    for i, v in enumerate((c + 2.017232 * d, c - 0.391762 * d - 0.812968 * e, c + 1.596027 * e)):
        out[..., i] = np.clip(np.rint(v), 0, 255)
    return out


def bgr_to_yuy2(bgr: np.ndarray) -> np.ndarray:
    """A BGR image as YUY2 (``H x W x 2``, BT.601 video range; chroma of each pixel pair
    averaged): what a YUY2 camera would deliver. For mocks and fakes."""
    b, g, r = (bgr[..., i].astype(np.float32) for i in range(3))
    y = 16.0 + 0.256788 * r + 0.504129 * g + 0.097906 * b
    u = 128.0 - 0.148223 * r - 0.290993 * g + 0.439216 * b
    v = 128.0 + 0.439216 * r - 0.367788 * g - 0.071427 * b
    h, w = bgr.shape[:2]
    out = np.empty((h, w // 2, 4), np.uint8)
    out[..., 0] = np.clip(np.rint(y[:, 0::2]), 0, 255)
    out[..., 2] = np.clip(np.rint(y[:, 1::2]), 0, 255)
    out[..., 1] = np.clip(np.rint((u[:, 0::2] + u[:, 1::2]) / 2), 0, 255)
    out[..., 3] = np.clip(np.rint((v[:, 0::2] + v[:, 1::2]) / 2), 0, 255)
    return out.reshape(h, w, 2)
