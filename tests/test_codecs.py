from pathlib import Path

import numpy as np
import pytest

from rgbdcast import CodecError, MockDevice, StreamKind, UsageError, codecs
from rgbdcast.codecs.body import BODY_DTYPE, bodies_from_json, bodies_to_json
from rgbdcast.codecs.png import decode_png, encode_png

IMAGE_CODECS = ["raw", "png"]


def _mock_frames() -> dict[StreamKind, object]:
    dev = MockDevice("m", color_size=(320, 180))
    return {f.kind: f.data for f in dev.render(17)}


def _roundtrip(name: str, data: np.ndarray) -> np.ndarray:
    codec = codecs.get(name)
    payload = codec.encode(data, {})
    out = codec.decode(payload, data.shape, data.dtype.str)
    assert isinstance(out, np.ndarray)
    return out


@pytest.mark.parametrize("name", IMAGE_CODECS)
def test_lossless_codecs_are_bit_exact_on_shared_depth(name: str, depth_dir: Path) -> None:
    files = sorted(depth_dir.glob("*depth*.npy"))
    assert len(files) >= 7
    for f in files:
        depth = np.load(f)
        out = _roundtrip(name, depth)
        assert out.dtype == depth.dtype and np.array_equal(out, depth), f.name


@pytest.mark.parametrize("name", IMAGE_CODECS)
def test_lossless_codecs_are_bit_exact_on_mock_and_real_color(name: str, depth_dir: Path) -> None:
    frames = _mock_frames()
    for kind in (StreamKind.depth, StreamKind.infrared, StreamKind.color):
        data = frames[kind]
        assert isinstance(data, np.ndarray)
        assert np.array_equal(_roundtrip(name, data), data)
    color = np.load(depth_dir / "kinect1_tum_color.npy")
    assert np.array_equal(_roundtrip(name, color), color)


def test_png_reads_every_filter_type() -> None:
    # A PNG written by another tool may use Sub, Average or Paeth rows: build one by hand.
    import struct
    import zlib

    rng = np.random.default_rng(1)
    img = rng.integers(0, 65535, (5, 7), dtype=np.uint16)
    raw = img.astype(">u2").view(np.uint8).reshape(5, -1)
    rows, prev = [], np.zeros(raw.shape[1], np.int32)
    for y, ftype in enumerate([0, 1, 2, 3, 4]):
        cur = raw[y].astype(np.int32)
        out = np.zeros_like(cur)
        for x in range(len(cur)):
            a = cur[x - 2] if x >= 2 else 0
            b = prev[x]
            c = prev[x - 2] if x >= 2 else 0
            pred = [0, a, b, (a + b) // 2, 0][ftype]
            if ftype == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
            out[x] = (cur[x] - pred) & 0xFF
        rows.append(bytes([ftype]) + out.astype(np.uint8).tobytes())
        prev = cur

    def chunk(tag: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body))

    png = (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", 7, 5, 16, 0, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(b"".join(rows)))
        + chunk(b"IEND", b"")
    )
    assert np.array_equal(decode_png(png), img)


@pytest.mark.parametrize(
    "payload",
    [b"", b"not a png", b"\x89PNG\r\n\x1a\n", encode_png(np.zeros((4, 4), np.uint16))[:-20]],
)
def test_png_rejects_garbage(payload: bytes) -> None:
    with pytest.raises(CodecError):
        codecs.get("png").decode(payload, (4, 4), "<u2")


def test_png_rejects_a_payload_that_disagrees_with_the_header() -> None:
    payload = encode_png(np.zeros((4, 4), np.uint16))
    with pytest.raises(CodecError):
        codecs.get("png").decode(payload, (4, 5), "<u2")


def test_raw_checks_size_against_shape() -> None:
    raw = codecs.get("raw")
    with pytest.raises(CodecError):
        raw.decode(b"\x00" * 10, (2, 3), "<u2")
    with pytest.raises(CodecError):
        raw.decode(b"", (100000, 100000), "<u2")  # over the decoded-size bound
    with pytest.raises(CodecError):
        raw.decode(b"\x00" * 8, (2, 2), "<f8")


def test_body_codec_round_trips_six_bodies_compactly() -> None:
    bodies = _mock_frames()[StreamKind.body]
    assert isinstance(bodies, tuple) and len(bodies) == 1
    six = tuple(
        type(bodies[0])(tracking_id=i + 1, joints=bodies[0].joints, right_hand=bodies[0].right_hand)
        for i in range(6)
    )
    codec = codecs.get("body")
    payload = codec.encode(six, {})
    assert len(payload) == 2 + 6 * BODY_DTYPE.itemsize == 4412
    out = codec.decode(payload, (6,), "body")
    assert [b.tracking_id for b in out] == [1, 2, 3, 4, 5, 6]  # type: ignore[union-attr]
    j_in, j_out = six[0].joints[3], out[0].joints[3]  # type: ignore[index]
    assert j_out.type == j_in.type and j_out.state == j_in.state
    assert np.allclose(j_out.position, j_in.position, atol=1e-6)
    assert np.allclose(j_out.depth_xy, j_in.depth_xy, atol=1e-3)
    assert bodies_from_json(bodies_to_json(out))[0].joints[3].type == j_in.type  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "payload,shape",
    [(b"", (0,)), (b"\x02\x00", (0,)), (b"\x01\x07", (7,)), (b"\x01\x01" + b"\x00" * 10, (1,))],
)
def test_body_codec_rejects_garbage(payload: bytes, shape: tuple[int, ...]) -> None:
    with pytest.raises(CodecError):
        codecs.get("body").decode(payload, shape, "body")


def test_registry_names_the_alternatives() -> None:
    with pytest.raises(UsageError, match="known"):
        codecs.get("nope")
    with pytest.raises(UsageError, match="cannot carry"):
        codecs.get("body", StreamKind.depth)
    names = {c.name for c in codecs.available(StreamKind.depth)}
    assert {"raw", "png"} <= names and "body" not in names
