"""``DepthFrameCompressor``: streamkinect2's asynchronous depth compression pipeline.

It listens to a kinect's ``on_depth_frame`` signal (a :class:`~rgbdcast.devices.MockDevice`, a
:class:`~rgbdcast.devices.MockKinect`, or any object with streamkinect2's interface), compresses
each frame on its own worker thread with the default lossless depth codec, and emits
``on_compressed_frame(compressor, compressed_frame=bytes)``. When the worker is busy the newest
frame replaces the waiting one and ``dropped`` counts it: streamkinect2's frame-drop.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
from blinker import Signal

from . import codecs
from .frames import StreamKind
from .net.slot import LatestSlot

__all__ = ["DepthFrameCompressor"]


class DepthFrameCompressor:
    """Compress *kinect*'s depth frames off its thread, dropping frames when overloaded.

    ``codec`` names the codec (default: the default depth codec, ``grad-zstd``); decode the
    bytes with ``rgbdcast.codecs.get(codec).decode(data, (height, width), "<u2")``.
    *io_loop* is accepted for streamkinect2 compatibility and unused.
    """

    on_compressed_frame = Signal()
    """Emitted on the worker thread: ``handler(compressor, compressed_frame=bytes)``."""

    def __init__(self, kinect: Any, io_loop: Any = None, codec: str | None = None) -> None:
        self.kinect = kinect
        self.codec_name = codec or codecs.default_codec(StreamKind.depth)
        self._codec = codecs.get(self.codec_name, StreamKind.depth)
        self._slot: LatestSlot[Any] = LatestSlot()
        self.compressed = 0
        self.last_shape: tuple[int, int] | None = None
        type(kinect).on_depth_frame.connect(self._on_depth, sender=kinect, weak=False)
        self._thread = threading.Thread(target=self._run, name="rgbdcast-compressor", daemon=True)
        self._thread.start()

    @property
    def dropped(self) -> int:
        """Frames replaced before the worker could take them."""
        return self._slot.dropped

    def _on_depth(self, sender: Any, depth_frame: Any = None, **_: Any) -> None:
        w, h = depth_frame.shape
        # the device reuses nothing, but copy anyway: the frame must outlive the signal
        self._slot.put(np.frombuffer(depth_frame.data, np.uint16).reshape(h, w).copy())

    def _run(self) -> None:
        while not self._slot.closed:
            img = self._slot.take(timeout=0.1)
            if img is None:
                continue
            data = bytes(memoryview(self._codec.encode(img, {})).cast("B"))
            self.last_shape = (img.shape[1], img.shape[0])
            self.compressed += 1
            self.on_compressed_frame.send(self, compressed_frame=data)

    def close(self) -> None:
        """Stop listening and end the worker thread."""
        type(self.kinect).on_depth_frame.disconnect(self._on_depth, sender=self.kinect)
        self._slot.close()
        self._thread.join(2.0)

    def __enter__(self) -> DepthFrameCompressor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
