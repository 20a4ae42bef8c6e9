"""Restart intervals as strips: join separately encoded bands of whole MCU rows into one
standard JPEG, and cut such a JPEG back into bands that decode independently.

A baseline JPEG may declare a restart interval (DRI): every *n* MCUs the entropy coder resets
its DC predictions, pads to a byte and writes a marker RST0..RST7. A band of whole MCU rows
encoded on its own is therefore exactly one restart interval of the whole image, provided the
interval is the band's MCU count and every band uses the same tables (same quality and
subsampling, libjpeg-turbo's standard Huffman tables). Joining keeps one header, sets the full
height, adds DRI and puts RSTn between the bands' entropy-coded data; any JPEG decoder reads the
result. Cutting does the reverse for a JPEG whose restart interval is a whole number of MCU rows.

Pure byte code: no decoding here. Every malformed input raises ``CodecError``.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass

from ..errors import CodecError

__all__ = ["JpegLayout", "join_bands", "parse_layout", "split_bands"]

_SOI, _EOI, _SOS, _DRI = b"\xff\xd8", b"\xff\xd9", 0xDA, 0xDD
_SOF = {*range(0xC0, 0xD0)} - {0xC4, 0xC8, 0xCC}  # frame headers (the rest are tables)
_SOF_BASELINE = {0xC0, 0xC1}  # Huffman, sequential: the only kinds cut into bands here
_RST = re.compile(rb"\xff[\xd0-\xd7]")  # in entropy-coded data 0xFF is always 0xFF00 or a marker
_STANDALONE = {0x01, *range(0xD0, 0xD8)}  # markers without a length field


@dataclass(frozen=True)
class JpegLayout:
    """Where things are in one baseline JPEG's header."""

    height: int
    width: int
    mcu_width: int
    mcu_height: int
    baseline: bool
    single_scan: bool  # baseline, one scan of all components: bands of rows cut cleanly
    restart_interval: int  # MCUs, 0 when the JPEG declares none
    height_at: int  # offset of the 2-byte frame height in the SOF segment
    dri_span: tuple[int, int] | None  # the DRI segment, to drop or replace
    sos_at: int  # offset of the SOS marker
    data_at: int  # first byte of entropy-coded data

    @property
    def mcus_per_row(self) -> int:
        return -(-self.width // self.mcu_width)


def parse_layout(data: bytes) -> JpegLayout:
    """Read the markers of a single-scan baseline JPEG up to its entropy-coded data."""
    if data[:2] != _SOI:
        raise CodecError("not a JPEG (no SOI marker)")
    pos, n = 2, len(data)
    sof: tuple[int, int, int, int, int, int] | None = None
    dri, dri_span, baseline = 0, None, False
    while True:
        if pos + 4 > n or data[pos] != 0xFF:
            raise CodecError("JPEG header cut short or damaged")
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in _STANDALONE:
            pos += 2
            continue
        (length,) = struct.unpack_from(">H", data, pos + 2)
        end = pos + 2 + length
        if length < 2 or end > n:
            raise CodecError("JPEG segment runs past the data")
        if marker in _SOF:
            sof = _read_sof(data, pos, length)
            baseline = marker in _SOF_BASELINE
        elif marker == _DRI:
            if length != 4:
                raise CodecError("bad DRI segment")
            (dri,) = struct.unpack_from(">H", data, pos + 4)
            dri_span = (pos, end)
        elif marker == _SOS:
            if sof is None:
                raise CodecError("JPEG scan before its frame header")
            height, width, mw, mh, height_at, ncomp = sof
            single = baseline and data[pos + 4] == ncomp  # one interleaved scan of everything
            return JpegLayout(
                height, width, mw, mh, baseline, single, dri, height_at, dri_span, pos, end
            )
        pos = end


def _read_sof(data: bytes, pos: int, length: int) -> tuple[int, int, int, int, int, int]:
    if length < 8:
        raise CodecError("bad JPEG frame header")
    height, width, ncomp = struct.unpack_from(">HHB", data, pos + 5)
    if length != 8 + 3 * ncomp or not 1 <= ncomp <= 4 or width == 0:
        raise CodecError("bad JPEG frame header")
    factors = [data[pos + 10 + 3 * i + 1] for i in range(ncomp)]
    hmax = max(f >> 4 for f in factors)
    vmax = max(f & 15 for f in factors)
    if not (1 <= hmax <= 4 and 1 <= vmax <= 4):
        raise CodecError("bad JPEG sampling factors")
    if ncomp == 1:  # a single-component scan is not interleaved: 8x8 MCUs
        hmax = vmax = 1
    return height, width, 8 * hmax, 8 * vmax, pos + 5, ncomp


def _entropy_span(data: bytes, layout: JpegLayout) -> tuple[int, int]:
    """Where the entropy-coded data of a single-scan JPEG starts and ends (before EOI)."""
    if data[-2:] != _EOI:
        raise CodecError("JPEG does not end with EOI")
    return layout.data_at, len(data) - 2


def join_bands(bands: list[bytes], band_rows: int) -> bytes:
    """One standard JPEG from bands encoded separately, top first, each *band_rows* high (a
    multiple of the MCU height) except possibly the last, all with the same tables."""
    if not bands:
        raise CodecError("no bands to join")
    if len(bands) == 1:
        return bands[0]
    first = parse_layout(bands[0])
    if not first.baseline:
        raise CodecError("only baseline JPEG bands can be joined")
    if band_rows % first.mcu_height or first.height != band_rows:
        raise CodecError(f"bands of {band_rows} rows are not whole MCU rows")
    interval = first.mcus_per_row * (band_rows // first.mcu_height)
    if interval > 0xFFFF:
        raise CodecError(f"a restart interval of {interval} MCUs does not fit in a JPEG")
    head = bytes(bands[0][: first.sos_at])
    if first.dri_span is not None:
        raise CodecError("bands must be encoded without restart intervals")
    tables = head[: first.height_at] + head[first.height_at + 2 :]
    total = 0
    parts: list[bytes | memoryview] = []
    for i, band in enumerate(bands):
        layout = first if i == 0 else parse_layout(band)
        other = bytes(band[: layout.sos_at])
        same = other[: layout.height_at] + other[layout.height_at + 2 :] == tables
        if (
            not same
            or layout.width != first.width
            or band[layout.sos_at : layout.data_at] != (bands[0][first.sos_at : first.data_at])
        ):
            raise CodecError("JPEG bands differ in tables or size; encode them alike")
        if layout.height > band_rows or (i < len(bands) - 1 and layout.height != band_rows):
            raise CodecError(f"bands must be {band_rows} rows high, the last one at most")
        total += layout.height
        if i:
            parts.append(bytes((0xFF, 0xD0 + (i - 1) % 8)))
        a, b = _entropy_span(band, layout)
        parts.append(memoryview(band)[a:b])
    if total > 0xFFFF:
        raise CodecError(f"{total} rows do not fit in a JPEG")
    out = bytearray(head)
    struct.pack_into(">H", out, first.height_at, total)
    out += b"\xff\xdd\x00\x04" + struct.pack(">H", interval)
    out += bands[0][first.sos_at : first.data_at]
    for part in parts:
        out += part
    out += _EOI
    return bytes(out)


def split_bands(data: bytes, max_bands: int) -> list[tuple[int, bytes]] | None:
    """Cut a JPEG whose restart interval is a whole number of MCU rows into standalone JPEGs,
    one per interval, as ``(first row, jpeg)``; ``None`` when it has no such intervals or more
    than *max_bands* of them (decode it whole then)."""
    layout = parse_layout(data)
    interval, per_row = layout.restart_interval, layout.mcus_per_row
    if not layout.single_scan or interval == 0 or interval % per_row:
        return None
    rows = interval // per_row * layout.mcu_height
    count = -(-layout.height // rows)
    if not 2 <= count <= max_bands:
        return None
    start, stop = _entropy_span(data, layout)
    cuts, pos = [], start
    for i in range(count - 1):
        found = _RST.search(data, pos, stop)
        if found is None or data[found.start() + 1] != 0xD0 + i % 8:
            raise CodecError(f"JPEG restart marker {i} missing or out of order")
        cuts.append((pos, found.start()))
        pos = found.start() + 2
    cuts.append((pos, stop))
    head, height_at = bytearray(data[: layout.sos_at]), layout.height_at
    if layout.dri_span is not None:  # each band is one interval: no restarts inside
        a, b = layout.dri_span
        del head[a:b]
        if a < height_at:
            height_at -= b - a
    sos = data[layout.sos_at : layout.data_at]
    out = []
    for i, (a, b) in enumerate(cuts):
        band_h = min(rows, layout.height - i * rows)
        struct.pack_into(">H", head, height_at, band_h)
        out.append((i * rows, b"".join((head, sos, data[a:b], _EOI))))
    return out
