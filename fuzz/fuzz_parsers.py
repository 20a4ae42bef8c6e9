"""Coverage-guided fuzzing of rgbdcast's parsers with atheris (libFuzzer for Python).

    pip install atheris
    python fuzz/fuzz_parsers.py -atheris_runs=200000          # all parsers, round robin
    python fuzz/fuzz_parsers.py -max_total_time=600 corpus/   # ten minutes, keep a corpus

The first input byte picks the parser; the rest is its input. Only the documented exceptions
may escape (ProtocolError and its CodecError; RecordingError for files); anything else is a
crash that libFuzzer reports with the input that caused it. Figures go to BENCHMARKS.md.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import atheris

with atheris.instrument_imports():
    from rgbdcast import MockDevice, StreamKind, codecs
    from rgbdcast.errors import ProtocolError, RecordingError
    from rgbdcast.protocol import cdr, ros2
    from rgbdcast.protocol.control import ControlResponder, parse_msg
    from rgbdcast.protocol.envelope import build_header, parse_encoded, parse_header
    from rgbdcast.protocol.gateway import CommandParser
    from rgbdcast.protocol.viewer import parse_client_message, parse_frame_message
    from rgbdcast.record import Recording

_FRAMES = {f.kind: f for f in MockDevice("f", color_size=(32, 16), depth_size=(24, 16)).render(1)}
_CODECS = [(c.name, k) for k in StreamKind for c in codecs.available(k)]
_RESPONDER = ControlResponder(me=lambda: {"version": 1}, stats=lambda: {})
_TMP = Path(tempfile.mkdtemp(prefix="rgbdcast-fuzz-")) / "in.mcap"


def _control(data: bytes) -> None:
    frames = data.split(b"\x00\xff", 3)
    try:
        parse_msg(frames)
    except ProtocolError:
        pass
    _RESPONDER.respond(frames)


def _payload(data: bytes) -> None:
    if not data:
        return
    name, kind = _CODECS[data[0] % len(_CODECS)]
    frame = _FRAMES[kind]
    shape = codecs.output_shape(codecs.get(name, kind), frame.shape)
    header = build_header(frame, name, len(data) - 1, 0, shape)
    parse_encoded([header, data[1:]]).decode()


def _gateway(data: bytes) -> None:
    parser = CommandParser()
    for i in range(0, len(data), 7):
        parser.feed(data[i : i + 7])
    parser.flush()
    parser.expire()


def _cdr(data: bytes) -> None:
    for decode in (cdr.decode_compressed_image, cdr.decode_raw_image, cdr.decode_calibration):
        try:
            decode(b"\x00\x01\x00\x00" + data)
        except ProtocolError:
            pass
    ros2.parse_attachment(data)


def _mcap(data: bytes) -> None:
    _TMP.write_bytes(b"\x89MCAP0\r\n" + data)
    try:
        for _ in Recording(_TMP).scan().frames():
            pass
    except RecordingError:
        pass


TARGETS = [
    _control,
    parse_header,
    _payload,
    _gateway,
    parse_client_message,
    parse_frame_message,
    _cdr,
    _mcap,
]


def one_input(data: bytes) -> None:
    if not data:
        return
    target = TARGETS[data[0] % len(TARGETS)]
    try:
        target(data[1:])
    except (ProtocolError, RecordingError):
        pass


def main() -> None:
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
