"""Video color (h264/hevc through PyAV): the codec, the encoder choice, and a stream that
survives dropped units and late joins (real encoders and decoders, real ZeroMQ on loopback)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zmq

from rgbdcast import Client, MockDevice, ProtocolError, Server, StreamKind, UsageError
from rgbdcast.codecs import get
from rgbdcast.codecs.video import VideoDecoder, is_keyframe
from rgbdcast.codecs.videoenc import VideoEncoder, choose_encoder, encoder_names
from rgbdcast.frames import Frame
from rgbdcast.net.publisher import KEYFRAME_MIN_INTERVAL_S
from rgbdcast.protocol.envelope import build_header, parse_header
from rgbdcast.testing import decode_elsewhere, psnr, wait_for

pytest.importorskip("av", reason="the [video] extra (PyAV) is not installed")

SIZE = (320, 180)


def _colors(n: int, size: tuple[int, int] = SIZE) -> list[np.ndarray]:
    dev = MockDevice("m", color_size=size, streams=["color"])
    return [dev.render(i)[0].array for i in range(n)]


# -- the codec ---------------------------------------------------------------------------------
@pytest.mark.parametrize("codec", ["h264", "hevc"])
def test_units_are_annexb_with_parameter_sets_on_every_keyframe(codec: str) -> None:
    images = _colors(12)
    enc = VideoEncoder(codec, {"gop": 5, "encoder": "x264"})
    units = [enc.encode(img, keyframe=(i == 7)) for i, img in enumerate(images)]
    keys = [i for i, (_, key) in enumerate(units) if key]
    assert keys[:3] == [0, 5, 7]  # the GOP bound, and one forced at 7
    assert all(b - a <= 5 for a, b in zip(keys, [*keys[1:], len(units)], strict=True))
    for i, (unit, key) in enumerate(units):
        assert unit[:4] == b"\x00\x00\x00\x01" or unit[:3] == b"\x00\x00\x01"
        assert is_keyframe(codec, unit) == key, i
    first_nal = {"h264": [7], "hevc": [32]}[codec]  # SPS / VPS lead every keyframe
    for i in keys:
        unit = units[i][0]
        at = unit.find(b"\x00\x00\x01") + 3
        nal = unit[at] & 0x1F if codec == "h264" else (unit[at] >> 1) & 0x3F
        assert nal in first_nal
    # any keyframe starts a fresh decoder, and every unit after it decodes well
    dec = VideoDecoder(codec)
    for i in range(7, 12):
        img = dec.feed(units[i][0], i, units[i][1], (*SIZE[::-1], 3))
        assert img is not None and psnr(img, images[i]) > 30  # a wrong reference: under 20


def test_stateless_encode_and_decode_are_one_keyframe() -> None:
    (img,) = _colors(1)
    codec = get("h264", StreamKind.color)
    unit = codec.encode(img, {})
    assert is_keyframe("h264", unit)
    out = codec.decode(unit, (180, 320, 3), "|u1")
    assert psnr(out, img) > 33
    enc = VideoEncoder("h264", {"encoder": "x264"})
    enc.encode(img)
    p_frame, key = enc.encode(img)
    assert not key
    with pytest.raises(ProtocolError, match="not a keyframe"):
        codec.decode(p_frame, (180, 320, 3), "uint8")
    with pytest.raises(ProtocolError, match="BGR or gray"):
        codec.decode(unit, (180, 320, 4), "|u1")


def test_a_gap_shows_nothing_until_a_keyframe_and_a_forged_key_flag_is_not_believed() -> None:
    images = _colors(30)
    enc = VideoEncoder("h264", {"gop": 300, "encoder": "x264"})
    units = [enc.encode(img, keyframe=(i == 20)) for i, img in enumerate(images)]
    dec = VideoDecoder("h264")
    shown: dict[int, float] = {}
    for i, (unit, key) in enumerate(units):
        if i in (8, 9):  # lost on the way
            continue
        forged = key or i == 12  # a peer claims a P-frame is a keyframe
        img = dec.feed(unit, i, forged, (180, 320, 3))
        if img is not None:
            shown[i] = psnr(img, images[i])
    assert sorted(shown) == [*range(8), *range(20, 30)]
    assert dec.gaps == 1 and dec.skipped == 10 and not dec.wants_keyframe
    normal = min(shown[i] for i in range(8))
    assert min(shown[i] for i in range(20, 30)) >= normal - 3


def test_bad_units_raise_codec_errors_and_break_the_chain() -> None:
    images = _colors(3)
    enc = VideoEncoder("h264", {"encoder": "x264"})
    key, _ = enc.encode(images[0])
    dec = VideoDecoder("h264")
    assert dec.feed(key, 0, True, (180, 320, 3)) is not None
    with pytest.raises(ProtocolError):
        dec.feed(key, 1, True, (360, 640, 3))  # not the size the header says
    assert dec.wants_keyframe and dec.errors == 1
    garbage = b"\x00\x00\x00\x01\x65" + bytes(range(256)) * 8  # an "IDR" of noise
    with pytest.raises(ProtocolError):
        dec.feed(garbage, 2, True, (180, 320, 3))


def test_encoder_settings_are_checked_when_the_stream_is_made() -> None:
    for params, match in [
        ({"gop": 0}, "gop"),
        ({"crf": 60}, "crf"),
        ({"bitrate": 5}, "bitrate"),
        ({"encoder": "magic"}, "unknown encoder"),
    ]:
        with pytest.raises(UsageError, match=match):
            VideoEncoder("h264", params)
    with pytest.raises(UsageError, match="cannot carry depth"):
        get("h264", StreamKind.depth)


def test_bitrate_rate_control_lands_near_the_target() -> None:
    images = _colors(60)
    sizes = {}
    for rate in (200_000, 800_000):
        enc = VideoEncoder("h264", {"bitrate": rate, "encoder": "x264"})
        sizes[rate] = sum(len(enc.encode(img)[0]) for img in images[1:]) * 8 / 59 * 30
    assert sizes[800_000] > 2 * sizes[200_000]
    assert sizes[200_000] < 2 * 200_000


# -- choosing an encoder -----------------------------------------------------------------------
def test_auto_tries_the_platforms_hardware_then_falls_back_to_software() -> None:
    assert encoder_names("h264", "auto", "win32") == [
        "h264_nvenc",
        "h264_qsv",
        "h264_amf",
        "libx264",
    ]
    assert encoder_names("hevc", "auto", "darwin") == ["hevc_videotoolbox", "libx265"]
    assert encoder_names("h264", "nvenc") == ["h264_nvenc"]
    tried: list[str] = []

    def probe(name: str) -> str | None:
        tried.append(name)
        return None if name in {"h264_qsv", "libx264"} else "no device"

    assert choose_encoder("h264", "auto", probe, "linux") == (
        "h264_qsv",
        ["h264_nvenc: no device", "h264_vaapi: no device"],
    )
    assert tried == ["h264_nvenc", "h264_vaapi", "h264_qsv"]
    name, skipped = choose_encoder(
        "h264", "auto", lambda n: "x" if n.startswith("h264") else None, "win32"
    )
    assert name == "libx264" and len(skipped) == 3
    with pytest.raises(UsageError, match="h264_nvenc: no GPU"):
        choose_encoder("h264", "nvenc", lambda n: "no GPU", "linux")


def test_the_real_probe_falls_back_to_software_here_and_says_why(
    caplog: pytest.LogCaptureFixture,
) -> None:
    (img,) = _colors(1)
    enc = VideoEncoder("h264", {"encoder": "auto"})
    with caplog.at_level("INFO", logger="rgbdcast.codecs.videoenc"):
        _unit, key = enc.encode(img)
    assert key and enc.encoder_name == "libx264"  # no GPU on the test machine
    (line,) = [r.getMessage() for r in caplog.records]
    assert "libx264 (software)" in line and "h264_nvenc" in line


# -- the envelope ------------------------------------------------------------------------------
def test_header_carries_unit_number_and_key_flag() -> None:
    (frame,) = MockDevice("m", color_size=SIZE, streams=["color"]).render(3)
    raw = build_header(frame, "h264", 10, 1, (180, 320, 3), video=(41, True))
    h = parse_header(raw)
    assert (h.au, h.key) == (41, True)
    plain = parse_header(build_header(frame, "jpeg", 10, 1))
    assert (plain.au, plain.key) == (None, False)
    for bad in (b',"au":-1', b',"au":"x"', b',"key":1'):
        with pytest.raises(ProtocolError):
            parse_header(raw[:-1] + bad + b"}")


# -- over the network --------------------------------------------------------------------------
class NoisyMock(MockDevice):
    """The mock's moving scene plus grain that changes every frame: units big enough that a
    stalled subscriber overflows the kernel's socket buffers, so ZeroMQ really drops units."""

    def render(self, index: int, scene_index: int | None = None) -> list[Frame]:
        frames = super().render(index, scene_index)
        out = []
        for f in frames:
            if f.kind is StreamKind.color:
                rng = np.random.default_rng(index)
                grain = rng.integers(0, 24, f.array.shape, dtype=np.uint8)
                f = f.replace(data=np.ascontiguousarray(f.array // 2 + grain))
            out.append(f)
        return out


def _video_server(device: MockDevice, **params: Any) -> Server:
    srv = Server(
        address="127.0.0.1",
        announce=False,
        codecs={"color": "h264"},
        codec_params={"color": {"gop": 300, "encoder": "x264", **params}},
    )
    srv.add_device(device)
    srv.start()
    return srv


def _source(device: MockDevice, seq: int) -> np.ndarray:
    return next(f for f in device.render(seq) if f.kind is StreamKind.color).array


def test_a_stalled_subscriber_recovers_through_a_keyframe_request(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import rgbdcast.client
    from rgbdcast.net.sockets import open_subscriber

    def small_buffers(ctx: Any, endpoint: str, curve: Any = None) -> Any:
        sock = open_subscriber(ctx, endpoint, curve)  # the kernel would hold seconds of units
        sock.disconnect(endpoint)
        sock.setsockopt(zmq.RCVBUF, 65536)
        sock.connect(endpoint)
        return sock

    monkeypatch.setattr(rgbdcast.client, "open_subscriber", small_buffers)
    dev = NoisyMock("noisy", color_size=(640, 360), streams=["color"], fps=30)
    srv = _video_server(dev, crf=14)  # big units: the stall overflows every buffer
    try:
        with Client(next(iter(srv.endpoints.values()))) as client:
            stalled = {"done": False}

            def stall_once(_c: Any, frame: Any, subscription: Any) -> None:
                if frame.seq > 0 and not stalled["done"]:  # the client's I/O thread sleeps
                    stalled["done"] = True
                    time.sleep(3.0)

            sub = client.subscribe("noisy", "color", queue_size=64)
            client.on_frame.connect(stall_once)
            try:
                frames: list[Frame] = []
                deadline = time.monotonic() + 20
                while time.monotonic() < deadline and (sub.video is None or sub.video.gaps < 1):
                    frames.append(sub.get(timeout=10))
                after = [sub.get(timeout=10) for _ in range(20)]
            finally:
                client.on_frame.disconnect(stall_once)
            assert sub.video is not None and sub.video.gaps >= 1, "no unit was dropped"
            assert sub.keyframe_requests >= 1 and sub.video.skipped >= 1
            stats = client.server_stats()["streams"]["noisy/color"]
        assert stats["keyframe_requests"] >= 1 and stats["keyframes_forced"] >= 1
        normal = min(psnr(f.array, _source(dev, f.seq)) for f in frames[:5])
        worst = min(psnr(f.array, _source(dev, f.seq)) for f in after)
        assert worst >= normal - 3, (normal, worst)
    finally:
        srv.stop()


def test_a_late_joiner_starts_at_a_keyframe_forced_for_it() -> None:
    dev = MockDevice("mock0", color_size=SIZE, streams=["color"], fps=30)
    srv = _video_server(dev)
    try:
        endpoint = next(iter(srv.endpoints.values()))
        with Client(endpoint) as first, Client(endpoint) as late:
            early = first.subscribe("mock0", "color")
            normal = min(
                psnr(f.array, _source(dev, f.seq)) for f in [early.get(5) for _ in range(10)]
            )
            time.sleep(0.6)
            sub = late.subscribe("mock0", "color")
            got = [sub.get(timeout=5) for _ in range(10)]
            assert early.video is not None and early.video.gaps == 0
            stats = first.server_stats()["streams"]["mock0/color"]
        assert stats["keyframes"] >= 2 and stats["keyframes_forced"] >= 1  # GOP is 300
        assert min(psnr(f.array, _source(dev, f.seq)) for f in got) >= normal - 3
    finally:
        srv.stop()


def _control(endpoint: str, msg: list[bytes]) -> tuple[int, dict[str, Any]]:
    sock = zmq.Context.instance().socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(endpoint)
    try:
        sock.send_multipart(msg)
        assert sock.poll(3000), "no reply"
        kind, payload = sock.recv_multipart()
        return kind[0], json.loads(payload)
    finally:
        sock.close(0)


def test_keyframe_requests_are_rate_limited_counted_and_checked() -> None:
    dev = MockDevice("mock0", color_size=SIZE, fps=30)
    srv = _video_server(dev)
    try:
        endpoint = next(iter(srv.endpoints.values()))
        with Client(endpoint) as watcher:
            sub = watcher.subscribe("mock0", "color")
            sub.get(timeout=5)
            before = watcher.server_stats()["streams"]["mock0/color"]
            ask = [b"\x16", json.dumps({"device": "mock0", "stream": "color"}).encode()]
            t0 = time.monotonic()
            for _ in range(100):
                kind, reply = _control(endpoint, ask)
                assert kind == 0x17 and reply == {"queued": True}
            time.sleep(0.3)
            elapsed = time.monotonic() - t0
            seen = sub.video.decoded if sub.video else 0
            assert wait_for(lambda: sub.video is not None and sub.video.decoded >= seen + 10)
            after = watcher.server_stats()["streams"]["mock0/color"]
            assert sub.video is not None and sub.video.gaps == 0 and sub.keyframe_requests == 0
        assert after["keyframe_requests"] - before["keyframe_requests"] == 100
        forced = after["keyframes_forced"] - before["keyframes_forced"]
        assert 1 <= forced <= elapsed / KEYFRAME_MIN_INTERVAL_S + 2
        assert after["keyframe_requests_merged"] - before["keyframe_requests_merged"] >= 90
        for payload, code in [
            ({"device": "nope", "stream": "color"}, 7),
            ({"device": "mock0", "stream": "depth"}, 8),
            ({"device": "mock0"}, 8),
        ]:
            kind, reply = _control(endpoint, [b"\x16", json.dumps(payload).encode()])
            assert kind == 0 and reply["code"] == code, reply
        assert (
            "video streams: color"
            in _control(endpoint, [b"\x16", b'{"device":"mock0","stream":"depth"}'])[1]["reason"]
        )
    finally:
        srv.stop()


def test_an_independent_decoder_reads_what_the_server_sent() -> None:
    """The units off the wire, from a keyframe on, as one raw H.264 file: FFmpeg's own demuxer
    in another process must find every picture, and they must match the source."""
    dev = MockDevice("mock0", color_size=SIZE, streams=["color"], fps=30)
    srv = _video_server(dev, gop=10)
    try:
        with Client(next(iter(srv.endpoints.values()))) as client:
            sub = client.subscribe("mock0", "color", decode=False, queue_size=64)
            units = []
            while len(units) < 30:
                enc = sub.get(timeout=5)
                if units or enc.header.key:
                    units.append(enc)
        assert [u.header.au for u in units] == list(
            range(units[0].header.au, units[0].header.au + 30)
        )
    finally:
        srv.stop()
    pics = decode_elsewhere(bytes(u.payload) for u in units)  # FFmpeg, another process
    assert len(pics) == 30
    for pic, unit in zip(pics, units, strict=True):
        assert psnr(pic, _source(dev, unit.header.seq)) > 33


def test_the_async_client_decodes_video_too() -> None:
    import asyncio

    from rgbdcast import AsyncClient

    dev = MockDevice("mock0", color_size=SIZE, streams=["color"], fps=30)
    srv = _video_server(dev)

    async def main() -> list[Frame]:
        async with AsyncClient(next(iter(srv.endpoints.values()))) as client:
            sub = client.subscribe("mock0", "color")
            return [await sub.get(timeout=5) for _ in range(5)]

    try:
        frames = asyncio.run(main())
        assert all(psnr(f.array, _source(dev, f.seq)) > 33 for f in frames)
    finally:
        srv.stop()


def test_serve_flags_reach_the_color_encoder() -> None:
    from rgbdcast.cli import build_parser
    from rgbdcast.cli.assemble import codec_settings

    parser = build_parser()
    args = parser.parse_args(
        [
            *("serve", "--color-codec", "hevc", "--color-gop", "15"),
            *("--color-bitrate", "2.5M", "--encoder", "x264"),
        ]
    )
    chosen, params = codec_settings(args)
    assert chosen["color"] == "hevc"
    assert params["color"] == {"gop": 15, "bitrate": 2_500_000, "encoder": "x264"}
    res = subprocess.run(
        [sys.executable, "-m", "rgbdcast", "serve", "--color-crf", "18", "--duration", "1"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 2 and res.stderr.count("\n") == 1
    assert "--color-crf: for video color; add --color-codec h264" in res.stderr


def test_infrared_as_video_is_gamma_coded_gray_and_decodes_to_16_bits() -> None:
    from rgbdcast.codecs.videoenc import gamma8

    values = np.arange(65536, dtype=np.uint16)
    back = np.round(65535 * (gamma8(values) / 255.0) ** 2)
    step = 2 * np.sqrt(values.astype(np.float64) * 65535) / 255 / 2 + 2  # half a level, rounded
    assert np.all(np.abs(back - values) <= step)
    dev = MockDevice("m", streams=["infrared"])
    images = [dev.render(i)[0].array for i in range(10)]
    enc = VideoEncoder("h264", {"encoder": "x264"})
    dec = VideoDecoder("h264")
    for i, img in enumerate(images):
        unit, key = enc.encode(img)
        out = dec.feed(unit, i, key, img.shape, "<u2")
        assert out.dtype == np.uint16 and out.shape == img.shape
        assert np.mean(np.abs(out.astype(np.int64) - img)) < 0.1 * img.mean()
    codec = get("h264", StreamKind.infrared)
    assert codec.decode(codec.encode(images[0], {}), images[0].shape, "<u2").dtype == np.uint16


# -- recordings --------------------------------------------------------------------------------
def _record_units(tmp_path: Path, n: int = 40) -> tuple[Path, list[Any], MockDevice]:
    """A served h264 color stream recorded from a decode=False subscription: the file, and the
    units as the subscription received them."""
    from rgbdcast.record import McapRecorder

    dev = MockDevice("mock0", color_size=SIZE, streams=["color"], fps=30)
    srv = _video_server(dev, gop=15)
    path = tmp_path / "video.mcap"
    try:
        with Client(next(iter(srv.endpoints.values()))) as client:
            sub = client.subscribe("mock0", "color", decode=False, queue_size=128)
            streams = {("mock0", StreamKind.color): {"width": SIZE[0], "height": SIZE[1]}}
            units = []
            with McapRecorder(path, streams=streams) as rec:
                while len(units) < n:
                    unit = sub.get(timeout=5)
                    rec.write(unit)
                    units.append(unit)
            assert rec.video_units_skipped == 0
    finally:
        srv.stop()
    return path, units, dev


def test_a_recording_holds_compressed_video_byte_for_byte(tmp_path: Path) -> None:
    from mcap.reader import make_reader

    path, units, _dev = _record_units(tmp_path)
    with open(path, "rb") as f:
        messages = [
            (schema.name, msg.data)
            for schema, channel, msg in make_reader(f).iter_messages()
            if channel.topic == "/mock0/color"
        ]
    assert {name for name, _ in messages} == {"foxglove_msgs/msg/CompressedVideo"}
    from rgbdcast.protocol import cdr

    decoded = [cdr.decode_compressed_image(data) for _, data in messages]
    assert {d["format"] for d in decoded} == {"h264"}
    assert [d["data"].tobytes() for d in decoded] == [bytes(u.payload) for u in units]
    # an independent decoder (FFmpeg's demuxer, another process) reads what the file holds
    pics = decode_elsewhere(d["data"].tobytes() for d in decoded)
    assert len(pics) == len(units)


def test_the_recorder_keeps_only_decodable_runs(tmp_path: Path) -> None:
    from rgbdcast.protocol.envelope import parse_encoded
    from rgbdcast.record import McapRecorder, Recording

    (frame,) = MockDevice("m", color_size=SIZE, streams=["color"]).render(0)
    enc = VideoEncoder("h264", {"gop": 300, "encoder": "x264"})
    images = _colors(12)
    units = [enc.encode(img, keyframe=(i == 7)) for i, img in enumerate(images)]
    path = tmp_path / "gaps.mcap"
    with McapRecorder(path) as rec:
        for i, (unit, key) in enumerate(units):
            if i in (1, 3):  # unit 1 lost; 3 lost later
                continue
            head = build_header(
                frame.replace(seq=i), "h264", len(unit), 1, (180, 320, 3), None, None, (i, key)
            )
            rec.write(parse_encoded([head, unit]))
    assert rec.video_units_skipped == 4  # 2 (after the gap at 1), then 4, 5, 6 (after 3)
    frames = [f for _, f in Recording(path).scan().frames()]
    assert [f.seq for f in frames] == [0, 7, 8, 9, 10, 11]
    for f in frames:
        assert psnr(f.array, images[f.seq]) > 30  # each decodes, in order or not


def test_a_replay_serves_the_recorded_units_unchanged_or_as_jpeg(tmp_path: Path) -> None:
    from rgbdcast.record.replay import ReplayDevice

    path, units, dev = _record_units(tmp_path)
    recorded = {u.header.seq: bytes(u.payload) for u in units}
    replay = ReplayDevice(path, loop=True)
    with Server(address="127.0.0.1", announce=False) as srv:
        srv.add_device(replay)
        endpoint = next(iter(srv.endpoints.values()))
        with Client(endpoint) as client:
            assert client.devices["mock0"].streams["color"]["codec"] == "h264"
            raw = client.subscribe("mock0", "color", decode=False, queue_size=128)
            pictures = client.subscribe("mock0", "color", queue_size=128)
            got = [raw.get(timeout=5) for _ in range(20)]
            shown = [pictures.get(timeout=5) for _ in range(20)]
        stats = srv.stats()["streams"]["mock0/color"]
    assert stats["passed_through"] >= 20 and stats["video_encoder"] == ""
    same = [bytes(u.payload) == recorded[u.header.seq] for u in got if u.header.seq in recorded]
    assert same and all(same)
    assert min(psnr(f.array, _source(dev, f.seq)) for f in shown) > 30
    replay = ReplayDevice(path, loop=True)
    with Server(address="127.0.0.1", announce=False, codecs={"color": "jpeg"}) as srv:
        srv.add_device(replay)
        with Client(next(iter(srv.endpoints.values()))) as client:
            sub = client.subscribe("mock0", "color", queue_size=64)
            frames = [sub.get(timeout=5) for _ in range(10)]
    assert min(psnr(f.array, _source(dev, f.seq)) for f in frames) > 28
