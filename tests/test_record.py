"""Recording to MCAP, inspecting and replaying: CDR checked against rosbags, record -> replay
bit-exact through real servers, killed recordings readable, bad files one clear line."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from rgbdcast import Client, MockDevice, Server, StreamKind, codecs
from rgbdcast.errors import ProtocolError, RecordingError
from rgbdcast.frames import Intrinsics
from rgbdcast.protocol import cdr
from rgbdcast.protocol.envelope import EncodedFrame, build_header, parse_encoded
from rgbdcast.record import McapRecorder, Recording
from rgbdcast.record.replay import ReplayDevice
from rgbdcast.testing import wait_for

CLI = [sys.executable, "-m", "rgbdcast.cli"]
COLOR = (320, 180)


def _encoded(frame: Any) -> EncodedFrame:
    name = codecs.default_codec(frame.kind)
    codec = codecs.get(name, frame.kind)
    payload = codec.encode(frame.data, {})
    shape = codecs.output_shape(codec, frame.shape)
    header = build_header(frame, name, memoryview(payload).nbytes, time.time_ns(), shape)
    return parse_encoded([header, payload])


# -- CDR, against an independent implementation ---------------------------------------------


def test_cdr_messages_match_rosbags_reading_of_the_foxglove_schemas() -> None:
    typesys = pytest.importorskip("rosbags.typesys")
    store = typesys.get_typestore(typesys.Stores.ROS2_HUMBLE)
    for name, text in (cdr.COMPRESSED_IMAGE, cdr.RAW_IMAGE, cdr.CALIBRATION):
        store.register(typesys.get_types_from_msg(text.split("=" * 80)[0], name))
    m = store.deserialize_cdr(
        cdr.encode_compressed_image(1_500_000_123, "cam", b"\xff\xd8jpeg", "jpeg"),
        cdr.COMPRESSED_IMAGE[0],
    )
    assert (m.timestamp.sec, m.timestamp.nanosec, m.frame_id, m.format) == (
        1,
        500_000_123,
        "cam",
        "jpeg",
    )
    assert bytes(m.data) == b"\xff\xd8jpeg"
    depth = np.arange(12, dtype="<u2").reshape(3, 4)
    m = store.deserialize_cdr(
        cdr.encode_raw_image(5, "c", 4, 3, "16UC1", 8, depth.data), cdr.RAW_IMAGE[0]
    )
    assert (m.width, m.height, m.encoding, m.step) == (4, 3, "16UC1", 8)
    assert np.array_equal(np.frombuffer(m.data.tobytes(), "<u2").reshape(3, 4), depth)
    intr = Intrinsics(width=512, height=424, fx=365.5, fy=365.0, cx=256.5, cy=212.0)
    intr = Intrinsics(**{**intr.to_dict(), "distortion": (0.1, -0.2, 0.0, 0.0, 0.01)})
    m = store.deserialize_cdr(cdr.encode_calibration(7, "c", intr), cdr.CALIBRATION[0])
    assert list(m.d) == [0.1, -0.2, 0.0, 0.0, 0.01] and m.distortion_model == "plumb_bob"
    assert list(m.k) == [365.5, 0, 256.5, 0, 365.0, 212.0, 0, 0, 1] and m.p[10] == 1.0
    assert cdr.decode_calibration(cdr.encode_calibration(7, "c", intr))[2] == intr


@pytest.mark.parametrize("cut", [0, 3, 4, 9, 20, 30])
def test_truncated_cdr_is_refused(cut: int) -> None:
    raw = cdr.encode_raw_image(5, "cam", 2, 1, "16UC1", 4, b"\x01\x02\x03\x04")
    with pytest.raises(ProtocolError):
        cdr.decode_raw_image(raw[:cut])


# -- writer and reader without a network ------------------------------------------------------


def test_recorded_frames_read_back_exactly(tmp_path: Path) -> None:
    dev = MockDevice("cam", color_size=COLOR)
    sent = {}
    path = tmp_path / "r.mcap"
    with McapRecorder(path, info={"name": "unit"}) as rec:
        for i in range(6):
            for frame in dev.render(i):
                enc = _encoded(frame)
                rec.write(enc)
                sent[(frame.kind, frame.seq)] = enc.decode()
    recording = Recording(path).scan()
    assert recording.closed_properly and not recording.truncated
    summary = recording.summary()
    assert summary["server"] == "unit"
    assert {s["stream"]: s["frames"] for s in summary["streams"]} == dict.fromkeys(
        ("body", "color", "depth", "infrared"), 6
    )
    got = list(recording.frames())
    assert len(got) == 24
    for t_log, frame in got:
        ref = sent[(frame.kind, frame.seq)]
        assert t_log == ref.host_time_ns and frame.device_time_ns == ref.device_time_ns
        if frame.kind is StreamKind.body:
            assert frame.bodies == ref.bodies
        elif frame.kind is StreamKind.color:  # the JPEG as sent, decoded the same way
            assert np.array_equal(frame.array, ref.array)
        else:
            assert frame.array.dtype == np.uint16 and np.array_equal(frame.array, ref.array)


def test_bodies_with_non_finite_coordinates_record_and_read_back(tmp_path: Path) -> None:
    """A joint the SDK could not place or project (-inf, NaN) is written as JSON null and read
    back as NaN: the recording stays strict JSON and the frame is not lost."""
    import dataclasses
    import math

    dev = MockDevice("cam", streams=["body"])
    frame = dev.render(0)[0]
    body = frame.bodies[0]
    odd = dataclasses.replace(
        body.joints[3],
        position=(float("nan"), float("-inf"), 1.5),
        color_xy=(float("-inf"), 2.0),
        depth_xy=(float("inf"), float("nan")),
    )
    bodies = (dataclasses.replace(body, joints=(*body.joints[:3], odd, *body.joints[4:])),)
    path = tmp_path / "b.mcap"
    sent = _encoded(frame.replace(data=bodies))
    with McapRecorder(path) as rec:
        rec.write(sent)
    [(_t, got)] = list(Recording(path).scan().frames())
    joint = got.bodies[0].joints[3]
    assert math.isnan(joint.position[0]) and math.isnan(joint.position[1])
    assert joint.position[2] == 1.5 and joint.color_xy[1] == 2.0
    assert math.isnan(joint.color_xy[0]) and all(math.isnan(v) for v in joint.depth_xy)
    assert got.bodies[0].joints[4] == sent.decode().bodies[0].joints[4]  # as sent (float32)


# -- end to end: a server, the record command, replay -----------------------------------------


@pytest.fixture
def mock_server() -> Any:
    srv = Server(address="127.0.0.1", announce=False, name="rec test")
    srv.add_device(MockDevice("mock0", color_size=COLOR, fps=30.0))
    srv.start()
    yield srv
    if srv.is_running:
        srv.stop()


def _record(endpoint: str, out: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*CLI, "record", endpoint, "--out", str(out), *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_record_inspect_and_replay_bit_exact(mock_server: Server, tmp_path: Path) -> None:
    endpoint = next(iter(mock_server.endpoints.values()))
    out = tmp_path / "session.mcap"
    proc = _record(endpoint, out, "--duration", "2")
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    assert "done:" in stdout and "depth" in stdout and "MB" in stdout
    res = subprocess.run([*CLI, "inspect", str(out), "--json"], capture_output=True, text=True)
    summary = json.loads(res.stdout)
    counts = {s["stream"]: s["frames"] for s in summary["streams"]}
    assert set(counts) == {"color", "depth", "infrared", "body"} and min(counts.values()) >= 30
    assert summary["closed_properly"] and 1.5 < summary["duration_s"] < 2.6
    text = subprocess.run([*CLI, "inspect", str(out)], capture_output=True, text=True).stdout
    assert "closed properly" in text and "foxglove_msgs/msg/RawImage" in text

    # every recorded depth frame is the mock's own frame of that number, bit for bit
    reference = MockDevice("mock0", color_size=COLOR)
    recorded = [f for _, f in Recording(out).scan().frames() if f.kind is StreamKind.depth]
    for frame in recorded[:10]:
        ref = next(f for f in reference.render(frame.seq) if f.kind is StreamKind.depth)
        assert np.array_equal(frame.array, ref.array)

    # replayed by a server, received by a client: the same pixels again
    replay = ReplayDevice(out)
    assert replay.id == "mock0" and set(replay.streams) == set(StreamKind)
    with Server(address="127.0.0.1", announce=False, name="replay") as srv:
        srv.add_device(replay)
        with Client(next(iter(srv.endpoints.values()))) as client:
            sub = client.subscribe("mock0", "depth", queue_size=64)
            got = [sub.get(timeout=5) for _ in range(15)]
    by_seq = {f.seq: f for f in recorded}
    for frame in got:
        assert np.array_equal(frame.array, by_seq[frame.seq].array)
    assert [f.seq for f in got] == sorted(f.seq for f in got)


@pytest.mark.parametrize("reencode", [False, True])
def test_replayed_jpeg_travels_as_recorded(tmp_path: Path, reencode: bool) -> None:
    """A replaying server sends the recorded JPEG bytes as they are and never decodes them,
    unless told to re-encode (then the server's own quality applies)."""
    dev = MockDevice("cam", color_size=COLOR, streams=["color"])
    path = tmp_path / "c.mcap"
    recorded = {}
    with McapRecorder(path) as rec:
        for i in range(8):
            enc = _encoded(dev.render(i)[0])
            rec.write(enc)
            recorded[i] = bytes(enc.payload)
    replay = ReplayDevice(path, loop=True)
    held: list[Any] = []  # the server's own frames, to see whether anyone decoded them
    replay.on_frame.connect(lambda d, frame=None: held.append(frame), sender=replay, weak=False)
    params = {"color": {"passthrough": False, "quality": 40}} if reencode else None
    with Server(address="127.0.0.1", announce=False, codec_params=params) as srv:
        srv.add_device(replay)
        with Client(next(iter(srv.endpoints.values()))) as client:
            raw = client.subscribe("cam", "color", decode=False, queue_size=64)
            got = [raw.get(timeout=5) for _ in range(6)]
        stats = srv.stats()["streams"]["cam/color"]
    first_pass = [f for f in got if f.seq in recorded]
    assert first_pass, [f.seq for f in got]
    for f in first_pass:
        assert f.header.codec == "jpeg" and f.header.shape == (COLOR[1], COLOR[0], 3)
        same = bytes(f.payload) == recorded[f.seq]
        assert same != reencode
        if reencode:
            assert f.nbytes < len(recorded[f.seq])  # quality 40 instead of the recorded 85
    assert (stats["passed_through"] >= 6) != reencode
    assert all(fr.encoded is not None for fr in held)
    assert any(fr.decoded for fr in held) == reencode


def test_replay_keeps_the_original_timing_and_loops(tmp_path: Path) -> None:
    dev = MockDevice("cam", color_size=COLOR, streams=["depth"])
    path = tmp_path / "t.mcap"
    with McapRecorder(path) as rec:
        for i in range(10):
            (frame,) = dev.render(i)
            enc = _encoded(frame)
            header = build_header(frame, enc.header.codec, enc.nbytes, 0)
            # spread the ten frames over 0.9 s of capture time
            moved = json.loads(header[5:])
            moved["t_host"] = 1_000_000_000 + i * 100_000_000
            rec.write(parse_encoded([header[:5] + json.dumps(moved).encode(), enc.payload]))
    replay = ReplayDevice(path, loop=True, speed=2.0)
    seen: list[tuple[float, int]] = []
    replay.on_frame.connect(
        lambda d, frame=None: seen.append((time.monotonic(), frame.seq)), sender=replay, weak=False
    )
    with replay:
        assert wait_for(lambda: len(seen) >= 25, 10.0)
    seqs = [s for _, s in seen]
    assert seqs[:10] == list(range(10)) and seqs[10:20] == list(range(10, 20))  # counts on
    span = seen[9][0] - seen[0][0]
    assert 0.35 < span < 0.8  # 0.9 s recorded, played at twice the speed: about 0.45 s


def test_looped_replay_joins_each_loop_without_a_gap(tmp_path: Path) -> None:
    """A recording that starts in the middle of a frameset (depth misses the first one) and
    lists body before depth: a looping replay plays the framesets every stream has, so every
    stream counts on without a gap or a repeat across loops and the frames of one frameset
    keep one number; played once, nothing is left out."""
    dev = MockDevice("cam", color_size=COLOR, streams=["depth", "body"])
    path = tmp_path / "uneven.mcap"
    with McapRecorder(path) as rec:
        for i in range(4, 10):
            for frame in sorted(dev.render(i), key=lambda f: f.kind is StreamKind.depth):
                if not (i == 4 and frame.kind is StreamKind.depth):
                    rec.write(_encoded(frame))

    def play(loop: bool, count: int) -> dict[StreamKind, list[int]]:
        replay = ReplayDevice(path, loop=loop, speed=50.0)
        seen: list[Any] = []
        replay.on_frame.connect(lambda d, frame=None: seen.append(frame), sender=replay, weak=False)
        with replay:
            assert wait_for(lambda: len(seen) >= count, 10.0)
        by_kind: dict[StreamKind, list[int]] = {}
        for f in seen:
            by_kind.setdefault(f.kind, []).append(f.seq)
            assert f.frameset_id == f.seq
        return by_kind

    looped = play(True, 30)
    for kind in (StreamKind.body, StreamKind.depth):
        assert looped[kind][:12] == list(range(5, 17)), (kind, looped[kind])
    once = play(False, 11)
    assert once[StreamKind.body] == list(range(4, 10))
    assert once[StreamKind.depth] == list(range(5, 10))


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL])
def test_a_stopped_or_killed_recording_stays_readable(
    mock_server: Server, tmp_path: Path, how: signal.Signals
) -> None:
    endpoint = next(iter(mock_server.endpoints.values()))
    out = tmp_path / "cut.mcap"
    proc = _record(endpoint, out, "--chunk-mb", "0.5")
    assert wait_for(lambda: out.exists() and out.stat().st_size > 3_000_000, 30.0)
    proc.send_signal(how)
    proc.communicate(timeout=30)
    recording = Recording(out).scan()
    assert recording.closed_properly == (how == signal.SIGTERM)
    frames = list(recording.frames())
    assert len(frames) >= 4 and recording.skipped == 0
    res = subprocess.run([*CLI, "inspect", str(out)], capture_output=True, text=True)
    assert res.returncode == 0
    if how == signal.SIGKILL:
        assert "NOT closed properly" in res.stdout


def test_bad_files_give_one_clear_line(tmp_path: Path) -> None:
    from mcap.writer import Writer

    cases = {
        "text.mcap": b"hello, this is not a recording\n" * 10,
        "empty.mcap": b"",
        "cut.mcap": b"\x89MCAP0\r\n\x01\x00",
    }
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
    with open(tmp_path / "foreign.mcap", "wb") as f:  # valid MCAP, not ours
        w = Writer(f)
        w.start()
        schema = w.register_schema("std_msgs/String", "jsonschema", b"{}")
        ch = w.register_channel("/chatter", "json", schema)
        w.add_message(ch, 1, b'{"data": "hi"}', 1)
        w.finish()
    expect = {
        "text.mcap": "not an MCAP file",
        "empty.mcap": "not an MCAP file",
        "cut.mcap": "holds no rgbdcast streams (the file ends before any data)",
        "foreign.mcap": "holds no rgbdcast streams; topics: /chatter",
        "missing.mcap": "cannot read",
    }
    for name, message in expect.items():
        res = subprocess.run(
            [*CLI, "inspect", str(tmp_path / name)], capture_output=True, text=True
        )
        assert res.returncode == 2 and message in res.stderr, (name, res.stderr)
        assert "Traceback" not in res.stderr and len(res.stderr.strip().splitlines()) == 1
    res = subprocess.run(
        [*CLI, "serve", "--no-announce", "--no-web", "--replay", str(tmp_path / "foreign.mcap")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 2 and "holds no rgbdcast streams" in res.stderr
    with pytest.raises(RecordingError):
        McapRecorder(tmp_path / "no" / "such" / "dir.mcap")


def test_malformed_messages_in_a_recording_are_skipped_and_counted(tmp_path: Path) -> None:
    path = tmp_path / "bad.mcap"
    dev = MockDevice("cam", color_size=COLOR, streams=["depth"])
    with McapRecorder(path) as rec:
        rec.write(_encoded(dev.render(0)[0]))
        ch = rec._channels["/cam/depth"]
        rec._writer.add_message(ch, 5, cdr.encode_raw_image(5, "cam", 4, 4, "16UC1", 8, b"x"), 5)
        rec._writer.add_message(ch, 6, b"\x00\x01\x00\x00garbage", 6)
        rec.write(_encoded(dev.render(1)[0]))
    recording = Recording(path).scan()
    assert [f.seq for _, f in recording.frames()] == [0, 1]
    assert recording.skipped == 2
