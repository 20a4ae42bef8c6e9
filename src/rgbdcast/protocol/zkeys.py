"""Zenoh key expressions of rgbdcast streams (pure; no Zenoh import).

Every stream is published under ``rgbdcast/<server>/<device>/<stream>``; a device's presence is
a liveliness token on ``rgbdcast/<server>/<device>``; its description and calibration answer
queries under ``rgbdcast/<server>/<device>/@meta/info``, ``.../@meta/calibration`` and
``.../@meta/calibration/<stream>``
(``@`` chunks are verbatim: wildcards such as ``rgbdcast/**`` never match them, so a data
subscription never receives metadata). Names are cleaned into valid key chunks.
"""

from __future__ import annotations

import re

from ..errors import UsageError

__all__ = [
    "ENCODING",
    "PREFIX",
    "key_chunk",
    "meta_key",
    "parse_stream_key",
    "presence_key",
    "stream_key",
]

PREFIX = "rgbdcast"
ENCODING = "application/x-rgbdcast-frame"
"""The samples' encoding; its schema part is the codec (``application/x-rgbdcast-frame;jpeg``)."""

_BAD = re.compile(r"[^A-Za-z0-9._~+=-]+")


def key_chunk(name: str) -> str:
    """*name* as one valid key-expression chunk: letters, digits and ``._~+=-`` kept, any other
    run of characters (``/``, ``*``, ``$``, ``?``, ``#``, spaces, ...) becomes one ``-``; never
    empty and never starting with ``@``."""
    chunk = _BAD.sub("-", name).strip("-")
    return chunk or "unnamed"


def stream_key(server: str, device: str, stream: str) -> str:
    return f"{PREFIX}/{key_chunk(server)}/{key_chunk(device)}/{key_chunk(stream)}"


def presence_key(server: str, device: str) -> str:
    return f"{PREFIX}/{key_chunk(server)}/{key_chunk(device)}"


def meta_key(server: str, device: str, what: str = "**") -> str:
    return f"{presence_key(server, device)}/@meta/{what}"


def parse_stream_key(key: str) -> tuple[str, str, str]:
    """``(server, device, stream)`` of a stream key; UsageError if it is not one."""
    parts = key.split("/")
    if len(parts) != 4 or parts[0] != PREFIX or any(not p or p.startswith("@") for p in parts):
        raise UsageError(f"{key!r} is not an rgbdcast stream key ({PREFIX}/SERVER/DEVICE/STREAM)")
    return parts[1], parts[2], parts[3]
