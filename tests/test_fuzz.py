"""Property-based fuzzing of every parser: whatever bytes arrive, only the documented exception
comes out (ProtocolError and its CodecError, RecordingError for files), never anything else.

The coverage-guided counterpart is ``fuzz/fuzz_parsers.py`` (atheris), run as its own command.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rgbdcast import MockDevice, StreamKind, codecs
from rgbdcast.errors import ProtocolError, RecordingError
from rgbdcast.protocol import cdr, ros2
from rgbdcast.protocol.control import ControlResponder, parse_msg
from rgbdcast.protocol.envelope import build_header, parse_encoded, parse_header
from rgbdcast.protocol.gateway import CommandParser
from rgbdcast.protocol.viewer import parse_client_message, parse_frame_message

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

frames_st = st.lists(st.binary(max_size=300), min_size=0, max_size=4)


@FUZZ
@given(frames_st)
def test_control_messages(frames: list[bytes]) -> None:
    with contextlib.suppress(ProtocolError):
        parse_msg(frames)
    reply = ControlResponder(me=lambda: {"version": 1}, stats=lambda: {}).respond(frames)
    assert isinstance(reply, list) and reply  # always an answer, never an exception


def _json_like() -> st.SearchStrategy[bytes]:
    leaf = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=20))
    tree = st.recursive(
        leaf,
        lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c, max_size=4),
        max_leaves=20,
    )
    return tree.map(lambda v: json.dumps(v).encode())


@FUZZ
@given(st.one_of(st.binary(max_size=400), _json_like().map(lambda b: b"RGBD\x01" + b)))
def test_frame_headers(raw: bytes) -> None:
    with contextlib.suppress(ProtocolError):
        parse_header(raw)


_DEV = MockDevice("f", color_size=(32, 16), depth_size=(24, 16))
_FRAMES = {f.kind: f for f in _DEV.render(1)}


def _header(kind: StreamKind, codec: str, size: int) -> bytes:
    frame = _FRAMES[kind]
    shape = codecs.output_shape(codecs.get(codec, kind), frame.shape)
    return build_header(frame, codec, size, 0, shape)


CODEC_CASES = [(c.name, k) for k in StreamKind for c in codecs.available(k)]


@pytest.mark.parametrize(("codec", "kind"), CODEC_CASES)
@settings(max_examples=150, deadline=None)
@given(payload=st.binary(max_size=2000), flip=st.integers(min_value=0, max_value=4000))
def test_payloads_of_every_codec(codec: str, kind: StreamKind, payload: bytes, flip: int) -> None:
    # random bytes, and a real payload with one byte flipped or cut short
    real = bytes(memoryview(codecs.get(codec, kind).encode(_FRAMES[kind].data, {})))
    damaged = bytearray(real)
    if damaged:
        damaged[flip % len(damaged)] ^= 0xFF
    for data in (payload, bytes(damaged), real[: flip % (len(real) + 1)]):
        with contextlib.suppress(ProtocolError):  # CodecError is a ProtocolError
            parse_encoded([_header(kind, codec, len(data)), data]).decode()


_WIDE = MockDevice("b", color_size=(64, 48), streams=["color"]).render(1)[0]
_BANDED = bytes(codecs.get("jpeg").encode(_WIDE.data, {"strips": 3}))


@settings(max_examples=300, deadline=None)
@given(flips=st.lists(st.integers(min_value=0, max_value=10**6), max_size=3), cut=st.integers(0))
def test_jpeg_in_restart_bands_damaged(flips: list[int], cut: int) -> None:
    # a JPEG the parallel decoder cuts at its restart markers: damage anywhere, header included
    assert _BANDED.count(b"\xff\xd0") == _BANDED.count(b"\xff\xd1") == 1
    damaged = bytearray(_BANDED)
    for f in flips:
        damaged[f % len(damaged)] ^= 1 << (f % 8)
    for data in (bytes(damaged), _BANDED[: cut % (len(_BANDED) + 1)]):
        with contextlib.suppress(ProtocolError):
            header = build_header(_WIDE, "jpeg", len(data), 0, (48, 64, 3))
            parse_encoded([header, data]).decode()


@FUZZ
@given(st.lists(st.binary(max_size=60), max_size=8))
def test_gateway_commands(chunks: list[bytes]) -> None:
    parser = CommandParser()
    for chunk in chunks:
        for cmd in parser.feed(chunk):
            assert cmd.kind
    parser.flush()
    parser.expire()


@FUZZ
@given(st.one_of(st.binary(max_size=300), st.text(max_size=300), _json_like()))
def test_viewer_messages(raw: bytes | str) -> None:
    with contextlib.suppress(ProtocolError):
        parse_client_message(raw)
    if isinstance(raw, bytes):
        with contextlib.suppress(ProtocolError):
            parse_frame_message(raw)


@FUZZ
@given(st.binary(max_size=300))
def test_cdr_and_ros2_attachments(raw: bytes) -> None:
    for decode in (cdr.decode_compressed_image, cdr.decode_raw_image, cdr.decode_calibration):
        with contextlib.suppress(ProtocolError):
            decode(b"\x00\x01\x00\x00" + raw)
    with contextlib.suppress(ProtocolError):
        ros2.parse_attachment(raw)


@pytest.fixture(scope="module")
def mcap_bytes(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    from rgbdcast.record import McapRecorder

    path = tmp_path_factory.mktemp("fuzz") / "r.mcap"
    with McapRecorder(path, info={"name": "fuzz"}) as rec:
        for i in range(3):
            for frame in _DEV.render(i):
                name = codecs.default_codec(frame.kind)
                codec = codecs.get(name, frame.kind)
                payload = bytes(memoryview(codec.encode(frame.data, {})))
                shape = codecs.output_shape(codec, frame.shape)
                header = build_header(frame, name, len(payload), 0, shape)
                rec.write(parse_encoded([header, payload]))
    return path.read_bytes()


@settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    cut=st.integers(min_value=0, max_value=10**6), flip=st.integers(min_value=0, max_value=10**6)
)
def test_mcap_files_cut_or_damaged(mcap_bytes: bytes, tmp_path: Path, cut: int, flip: int) -> None:
    from rgbdcast.record import Recording

    damaged = bytearray(mcap_bytes[: cut % (len(mcap_bytes) + 1)])
    if damaged and flip % 2:
        damaged[flip % len(damaged)] ^= 0x5A
    path = tmp_path / "x.mcap"
    path.write_bytes(bytes(damaged))
    try:
        recording = Recording(path).scan()
        for _ in recording.frames():
            pass
    except RecordingError:
        pass


def test_a_decoded_size_bound_stops_decompression_bombs() -> None:
    import zstandard

    bomb = zstandard.ZstdCompressor().compress(bytes(200_000_000))  # 200 MB of zeros, 6 KB
    assert len(bomb) < 100_000
    header = build_header(_FRAMES[StreamKind.depth], "grad-zstd", len(bomb), 0, (10000, 10000))
    with pytest.raises(ProtocolError):
        parse_encoded([header, bomb]).decode()
    header = json.loads(_header(StreamKind.depth, "raw", 10)[5:])
    header["shape"] = [99999, 99999]
    with pytest.raises(ProtocolError):
        parse_encoded([b"RGBD\x01" + json.dumps(header).encode(), bytes(10)]).decode()


def test_an_mcap_record_claiming_a_huge_size_is_damage_not_a_memory_error(tmp_path: Path) -> None:
    """Found by fuzz/fuzz_parsers.py (atheris): an Attachment whose data length is near 2**64
    made the MCAP reader try to allocate it."""
    import base64

    from rgbdcast.record import Recording

    crash = base64.b64decode(
        "/wkAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAP//AAAAAAAAAAAAAAAAAAAAAAAAAA=="
    )
    chunk_crash = base64.b64decode(  # a record inside a chunk claiming ~2**64 bytes
        "JwYnAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAASAAAAAAAAAAAAAAAAAAAAAAAAP////8A"
    )
    for i, data in enumerate((crash, chunk_crash)):
        path = tmp_path / f"crash{i}.mcap"
        path.write_bytes(b"\x89MCAP0\r\n" + data[1:])
        with pytest.raises(RecordingError, match="ends before any data"):
            Recording(path).scan()


def test_a_calibration_with_zero_sizes_is_a_protocol_error() -> None:
    """Found by fuzz/fuzz_parsers.py (atheris): it escaped as UsageError."""
    from rgbdcast.frames import Intrinsics

    good = cdr.encode_calibration(1, "c", Intrinsics(width=4, height=4, fx=1, fy=1, cx=0, cy=0))
    zero = bytearray(good)
    at = good.index(b"c\x00") + 2 + 2  # past frame_id and its padding: width, height
    zero[at : at + 8] = bytes(8)
    with pytest.raises(ProtocolError, match="bad calibration"):
        cdr.decode_calibration(bytes(zero))
