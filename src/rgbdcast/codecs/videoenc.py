"""The encoding half of the video codecs: which FFmpeg encoder to use, and a stateful encoder.

How this works: a stream's :class:`VideoEncoder` opens its FFmpeg encoder (through PyAV) at the
first frame, at that frame's size, with low-latency settings: no B-frames, zero-latency tuning,
one access unit out for every frame in, a keyframe at least every ``gop`` frames and whenever the
caller forces one. Its output is Annex B, one access unit per frame, and every keyframe is an IDR
that carries the parameter sets (SPS/PPS, and VPS for HEVC), so a decoder can start at any
keyframe: what Foxglove's ``CompressedVideo`` and WebCodecs expect.

:func:`choose_encoder` picks the encoder: the one asked for, or with ``auto`` the first hardware
encoder that this FFmpeg build has and that opens on this machine, else the software one
(libx264, libx265). It is given the probe, so the choice can be tested with a fake list.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from fractions import Fraction
from typing import Any

import numpy as np

from ..errors import CodecError, UsageError

__all__ = [
    "DEFAULT_CRF",
    "DEFAULT_GOP",
    "ENCODER_CHOICES",
    "VideoEncoder",
    "choose_encoder",
    "encoder_names",
    "gamma8",
    "import_av",
]

log = logging.getLogger(__name__)

DEFAULT_GOP = 60
"""Frames between keyframes when nobody asks for one sooner (2 s at 30 fps)."""
DEFAULT_CRF = 22
"""x264's constant-rate factor when neither ``crf`` nor ``bitrate`` is given: with the
``veryfast`` preset, on the mock's 1080p color, a PSNR of 37.9 dB against the default JPEG's
36.6 (q85, 4:2:0) at about a fourteenth of its bits (BENCHMARKS.md, "Video color")."""
MAX_GOP = 600

ENCODER_CHOICES = ("auto", "x264", "nvenc", "qsv", "vaapi", "videotoolbox", "amf")
"""What ``--encoder`` accepts: ``x264`` means the software encoder (libx265 for HEVC)."""

_FAMILIES: dict[str, dict[str, str]] = {
    "h264": {
        "x264": "libx264",
        "nvenc": "h264_nvenc",
        "qsv": "h264_qsv",
        "vaapi": "h264_vaapi",
        "videotoolbox": "h264_videotoolbox",
        "amf": "h264_amf",
    },
    "hevc": {
        "x264": "libx265",
        "nvenc": "hevc_nvenc",
        "qsv": "hevc_qsv",
        "vaapi": "hevc_vaapi",
        "videotoolbox": "hevc_videotoolbox",
        "amf": "hevc_amf",
    },
}

_HARDWARE_ORDER = {
    "darwin": ("videotoolbox",),
    "win32": ("nvenc", "qsv", "amf"),
    "linux": ("nvenc", "vaapi", "qsv"),
}


_GAMMA8 = np.round(255 * np.sqrt(np.arange(65536) / 65535)).astype(np.uint8)


def gamma8(image: np.ndarray) -> np.ndarray:
    """16-bit infrared to 8 bits after a gamma of 2 (``round(255 * sqrt(v / 65535))``): the
    dark end, where most of an infrared image lies, keeps the most levels."""
    out: np.ndarray = _GAMMA8[image]
    return out


def import_av() -> Any:
    """PyAV, or a :class:`UsageError` that says how to install it."""
    try:
        import av
    except ImportError:
        raise UsageError("video codecs need PyAV: pip install 'rgbdcast[video]'") from None
    return av


def encoder_names(codec: str, wanted: str, platform: str | None = None) -> list[str]:
    """The FFmpeg encoders to try for *codec* (``h264``/``hevc``), in order, for ``--encoder
    wanted``: just that one, or with ``auto`` the platform's hardware encoders, then software."""
    family = _FAMILIES[codec]
    if wanted not in ENCODER_CHOICES:
        raise UsageError(f"unknown encoder {wanted!r} (choose from {', '.join(ENCODER_CHOICES)})")
    if wanted != "auto":
        return [family[wanted]]
    plat = platform or sys.platform
    hardware = _HARDWARE_ORDER.get(plat, _HARDWARE_ORDER["linux"])
    return [family[h] for h in hardware] + [family["x264"]]


def choose_encoder(
    codec: str, wanted: str, probe: Callable[[str], str | None], platform: str | None = None
) -> tuple[str, list[str]]:
    """The encoder to use and why the ones before it were passed over.

    *probe(name)* returns None when encoder *name* works here, or the reason it does not.
    With ``auto`` a failing hardware encoder falls through to the next and finally to software;
    an encoder asked for by name that fails is a :class:`UsageError` with the reason.
    """
    skipped: list[str] = []
    names = encoder_names(codec, wanted, platform)
    for name in names:
        why = probe(name)
        if why is None:
            return name, skipped
        skipped.append(f"{name}: {why}")
    raise UsageError(f"no {codec} encoder works here ({'; '.join(skipped)})")


def _options(name: str, gop: int, crf: int | None, preset: str | None) -> dict[str, str]:
    """Low-latency private options of one FFmpeg encoder (rate control by quality if *crf*)."""
    if name == "libx264":
        opts = {"preset": preset or "veryfast", "tune": "zerolatency", "forced-idr": "1"}
        if crf is not None:
            opts["crf"] = str(crf)
        return opts
    if name == "libx265":
        params = f"bframes=0:repeat-headers=1:keyint={gop}:log-level=error"
        opts = {"preset": preset or "ultrafast", "tune": "zerolatency", "forced-idr": "1"}
        if crf is not None:
            opts["crf"] = str(crf)
        return {**opts, "x265-params": params}
    # hardware (unverified here: no GPU): each vendor's lowest-latency settings
    if name.endswith("_nvenc"):
        opts = {"preset": preset or "p1", "tune": "ull", "zerolatency": "1", "forced-idr": "1"}
        if crf is not None:
            opts.update({"rc": "vbr", "cq": str(crf)})
        return opts
    if name.endswith("_qsv"):
        opts = {"preset": preset or "veryfast", "look_ahead": "0", "forced_idr": "1"}
        return {**opts, **({"global_quality": str(crf)} if crf is not None else {})}
    if name.endswith("_amf"):
        return {"usage": "ultralowlatency", "quality": preset or "speed"}
    if name.endswith("_videotoolbox"):
        return {"realtime": "1", "allow_sw": "0"}
    return {}


class VideoEncoder:
    """One stream's encoder. ``encode(image, keyframe)`` returns the access unit for that image
    and whether it is a keyframe (with parameter sets).

    *params*: ``gop`` (frames between keyframes, default 60), ``crf`` (quality, default 22)
    or ``bitrate`` (bits/s; replaces crf), ``encoder`` (``auto``, ``x264``, ``nvenc``, ...),
    ``preset``, ``threads`` (default 2).
    """

    def __init__(
        self,
        codec: str,
        params: dict[str, Any],
        probe: Callable[[str], str | None] | None = None,
    ) -> None:
        self.codec = codec
        self.gop = int(params.get("gop", DEFAULT_GOP))
        if not 1 <= self.gop <= MAX_GOP:
            raise UsageError(f"gop must be between 1 and {MAX_GOP} frames, got {self.gop}")
        bitrate = params.get("bitrate")
        self.bitrate = int(bitrate) if bitrate is not None else None
        if self.bitrate is not None and not 10_000 <= self.bitrate <= 1_000_000_000:
            raise UsageError(f"bitrate must be 10 kbit/s to 1 Gbit/s, got {self.bitrate}")
        crf = params.get("crf")
        self.crf = int(crf) if crf is not None else (None if self.bitrate else DEFAULT_CRF)
        if self.crf is not None and not 0 <= self.crf <= 51:
            raise UsageError(f"crf must be between 0 and 51, got {self.crf}")
        self.wanted = str(params.get("encoder", "auto"))
        encoder_names(codec, self.wanted)  # checks the name now, not at the first frame
        self.preset = params.get("preset")
        self.threads = int(params.get("threads", 2))
        self._probe = probe
        self.encoder_name: str | None = None
        """The FFmpeg encoder chosen (after the first frame)."""
        self._av = import_av()
        self._ctx: Any = None
        self._size: tuple[int, int] | None = None
        self._pts = 0

    def _open_context(self, name: str, width: int, height: int) -> Any:
        av = self._av
        ctx = av.CodecContext.create(name, "w")
        ctx.width, ctx.height = width, height
        ctx.pix_fmt = "yuv420p" if name.startswith("lib") or "nvenc" in name else "nv12"
        ctx.time_base = Fraction(1, 1000)
        ctx.framerate = Fraction(30, 1)
        ctx.gop_size = self.gop
        ctx.max_b_frames = 0
        ctx.thread_count = self.threads
        if self.bitrate is not None:
            ctx.bit_rate = self.bitrate
        ctx.options = _options(name, self.gop, self.crf, self.preset)
        ctx.open()
        return ctx

    def _probe_open(self, width: int, height: int) -> Callable[[str], str | None]:
        def probe(name: str) -> str | None:
            try:
                self._av.codec.Codec(name, "w")
            except Exception:
                return "not in this FFmpeg build"
            try:
                ctx = self._open_context(name, width, height)
                blank = self._av.VideoFrame.from_ndarray(
                    np.zeros((height, width, 3), np.uint8), format="bgr24"
                )
                ctx.encode(blank)
            except Exception as exc:  # a driver or device that is not there
                reason = str(exc).split(":")[0].strip() or type(exc).__name__
                return f"does not open here ({reason[:60]})"
            return None

        return probe

    def _open(self, width: int, height: int) -> None:
        if width % 2 or height % 2:
            raise CodecError(f"video needs an even width and height, got {width}x{height}")
        if self.encoder_name is None:
            probe = self._probe or self._probe_open(width, height)
            self.encoder_name, skipped = choose_encoder(self.codec, self.wanted, probe)
            kind = "software" if self.encoder_name.startswith("lib") else "hardware"
            log.info(
                "%s: encoding with %s (%s)%s",
                self.codec,
                self.encoder_name,
                kind,
                f"; passed over {'; '.join(skipped)}" if skipped else "",
            )
        self._ctx = self._open_context(self.encoder_name, width, height)
        self._size = (width, height)

    def encode(self, image: np.ndarray, keyframe: bool = False) -> tuple[bytes, bool]:
        """The access unit for *image* (BGR, BGRA, YUY2 as ``H x W x 2`` or gray uint8, or 16-bit
        infrared, coded as :func:`gamma8`) and whether it is a keyframe. A new size reopens the
        encoder (its first unit is a keyframe)."""
        if image.dtype == np.uint16 and image.ndim == 2:
            image = gamma8(image)
        if image.dtype != np.uint8 or image.ndim not in (2, 3):
            raise CodecError(f"video encodes 8-bit images, got {image.dtype} {image.shape}")
        height, width = image.shape[:2]
        if self._size != (width, height):
            self._open(width, height)
        channels = 1 if image.ndim == 2 else image.shape[2]
        fmt = {1: "gray", 2: "yuyv422", 3: "bgr24", 4: "bgra"}[channels]
        frame = self._av.VideoFrame.from_ndarray(image, format=fmt)
        frame.pts = self._pts
        self._pts += 1
        if keyframe:
            frame.pict_type = self._av.video.frame.PictureType.I
        packets = self._ctx.encode(frame)
        if len(packets) != 1:  # zero-latency encoders give one unit per frame, at once
            raise CodecError(f"{self.encoder_name} gave {len(packets)} units for one frame")
        packet = packets[0]
        return bytes(packet), bool(packet.is_keyframe)

    def close(self) -> None:
        self._ctx = None  # PyAV frees the FFmpeg context with its last reference
        self._size = None
