import dataclasses
import json

import numpy as np
import pytest

from rgbdcast import Frame, Intrinsics, ProtocolError
from rgbdcast.protocol.control import (
    MAX_CONTROL_BYTES,
    ControlResponder,
    ErrorCode,
    MessageType,
    make_msg,
    parse_msg,
)
from rgbdcast.protocol.envelope import build_header, decode_frame, parse_header
from rgbdcast.protocol.session import ServerView

ME = {"version": 1, "name": "s", "endpoints": {"control": "tcp://1.2.3.4:5"}, "devices": []}


def test_messages_match_streamkinect2_v1() -> None:
    assert make_msg(MessageType.ping) == [b"\x01"]
    assert make_msg(MessageType.who) == [b"\x03"]
    assert make_msg(MessageType.error, {"reason": "x"}) == [b"\x00", b'{"reason":"x"}']
    assert parse_msg([b"\x04", json.dumps(ME).encode()]) == (MessageType.me, ME)
    assert parse_msg([b"\x02"]) == (MessageType.pong, None)


@pytest.mark.parametrize(
    "frames,code",
    [
        ([], ErrorCode.bad_message),
        ([b"\x01", b"{}", b"{}"], ErrorCode.bad_message),
        ([b""], ErrorCode.bad_message),
        ([b"\x01\x01"], ErrorCode.bad_message),
        ([b"\x7f"], ErrorCode.unknown_type),
        ([b"\x01", b"{nope"], ErrorCode.bad_json),
        ([b"\x01", b"\xff\xfe"], ErrorCode.bad_json),
        ([b"\x01", b"[1, 2]"], ErrorCode.bad_json),
        ([b"\x01", b'"text"'], ErrorCode.bad_json),
        ([b"\x01", b'{"a":' * 40 + b"1" + b"}" * 40], ErrorCode.bad_json),
        ([b"\x01", b"[" * 100000], ErrorCode.bad_json),
        ([b"\x01", b" " * (MAX_CONTROL_BYTES + 1)], ErrorCode.too_large),
    ],
)
def test_every_bad_message_gets_an_error_reply(frames: list[bytes], code: ErrorCode) -> None:
    with pytest.raises(ProtocolError) as info:
        parse_msg(frames)
    assert info.value.code == code  # type: ignore[attr-defined]
    responder = ControlResponder(me=lambda: ME)
    reply = responder.respond(frames)
    mtype, payload = parse_msg(reply)
    assert mtype is MessageType.error
    assert payload is not None and payload["code"] == code and payload["reason"]
    assert responder.counters.errors == {code.name: 1}
    assert parse_msg(responder.respond([b"\x01"]))[0] is MessageType.pong  # still serving


@pytest.mark.parametrize("mtype", [MessageType.pong, MessageType.me, MessageType.error])
def test_server_only_messages_are_refused(mtype: MessageType) -> None:
    reply = ControlResponder(me=lambda: ME).respond(make_msg(mtype))
    assert parse_msg(reply)[1]["code"] == ErrorCode.not_a_request  # type: ignore[index]


def test_a_failing_me_builder_is_an_internal_error_not_a_crash() -> None:
    def broken() -> dict[str, object]:
        raise RuntimeError("boom")

    reply = ControlResponder(me=broken).respond([b"\x03"])
    assert parse_msg(reply)[1]["code"] == ErrorCode.internal  # type: ignore[index]


def _depth_frame() -> Frame:
    intr = Intrinsics(width=4, height=3, fx=2.0, fy=2.0, cx=1.5, cy=1.0)
    data = np.arange(12, dtype=np.uint16).reshape(3, 4)
    return Frame(
        device_id="d0",
        kind="depth",
        seq=9,
        data=data,
        host_time_ns=123,
        device_time_ns=45,
        frameset_id=9,
        intrinsics=intr,
    )


def test_envelope_round_trip() -> None:
    frame = _depth_frame()
    payload = frame.array.tobytes()
    header = build_header(frame, "raw", len(payload), 999)
    assert header.startswith(b"RGBD\x01")
    h, out = decode_frame([header, payload])
    assert (h.seq, h.codec, h.send_time_ns, h.host_time_ns) == (9, "raw", 999, 123)
    assert out.intrinsics == frame.intrinsics and np.array_equal(out.array, frame.array)
    assert out.units == "mm" and out.frameset_id == 9


@pytest.mark.parametrize("device", ["d0", 'we%ird "cam" \\ 100%', "kamera-\u00fc\u00df-\u96fb"])
def test_header_fields_are_exact_for_any_device_name(device: str) -> None:
    frame = _depth_frame().replace(device_id=device, seq=2**40, host_time_ns=2**62)
    header = build_header(frame, "raw", 24, 7, crc=0xFFFFFFFF)
    assert header.isascii()
    fields = json.loads(header[5:])
    assert fields == {
        "device": device,
        "stream": "depth",
        "seq": 2**40,
        "t_device": 45,
        "t_host": 2**62,
        "t_send": 7,
        "frameset": 9,
        "shape": [3, 4],
        "dtype": "<u2",
        "codec": "raw",
        "units": "mm",
        "size": 24,
        "intrinsics": frame.intrinsics.to_dict() if frame.intrinsics else None,
        "crc": 0xFFFFFFFF,
    }
    assert parse_header(header).device_id == device


def test_changed_intrinsics_are_read_anew_each_time() -> None:
    frame = _depth_frame()
    payload = frame.array.tobytes()
    first = decode_frame([build_header(frame, "raw", len(payload), 1), payload])[1]
    assert first.intrinsics == frame.intrinsics
    assert frame.intrinsics is not None
    moved = dataclasses.replace(frame.intrinsics, fx=3.5, distortion=(0.1, 0.0, 0.0, 0.0, 0.0))
    second = decode_frame([build_header(frame.replace(intrinsics=moved), "raw", 24, 2), payload])
    assert second[1].intrinsics == moved
    header, third = decode_frame([build_header(frame, "raw", len(payload), 3), payload])
    assert third.intrinsics == frame.intrinsics
    assert header.intrinsics is not None
    header.intrinsics.update(moved.to_dict())  # a caller editing its header changes nothing
    again = decode_frame([build_header(frame.replace(intrinsics=moved), "raw", 24, 4), payload])
    assert again[1].intrinsics == moved


def _header(**change: object) -> bytes:
    frame = _depth_frame()
    fields = json.loads(build_header(frame, "raw", 24, 1)[5:])
    fields.update(change)
    return b"RGBD\x01" + json.dumps(fields).encode()


@pytest.mark.parametrize(
    "parts",
    [
        [b"RGBD\x01{}"],
        [b"XXXX\x01{}", b""],
        [b"RGBD\x02{}", b""],
        [b"RGBD\x01[]", b""],
        [b"RGBD\x01{", b""],
        [_header(seq=-1), b"\x00" * 24],
        [_header(seq="1"), b"\x00" * 24],
        [_header(seq=True), b"\x00" * 24],
        [_header(size=24.0), b"\x00" * 24],
        [_header(shape=[3, True]), b"\x00" * 24],
        [_header(stream="heat"), b"\x00" * 24],
        [_header(codec="zip"), b"\x00" * 24],
        [_header(codec="body"), b"\x00" * 24],
        [_header(size=25), b"\x00" * 24],
        [_header(shape=[3, 5]), b"\x00" * 24],
        [_header(shape=[3, "4"]), b"\x00" * 24],
        [_header(dtype="<f4"), b"\x00" * 24],
        [_header(intrinsics={"width": -1}), b"\x00" * 24],
        [_header(), b"\x00" * 23],
        [b"RGBD\x01" + b" " * 70000, b""],
    ],
)
def test_malformed_frames_raise_protocol_error(parts: list[bytes]) -> None:
    with pytest.raises(ProtocolError):
        decode_frame(parts)


def test_parse_header_requires_every_field() -> None:
    fields = json.loads(build_header(_depth_frame(), "raw", 24, 1)[5:])
    for name in fields:
        if name == "intrinsics":
            continue
        partial = {k: v for k, v in fields.items() if k != name}
        with pytest.raises(ProtocolError):
            parse_header(b"RGBD\x01" + json.dumps(partial).encode())


def test_server_view_reports_added_removed_and_changed_devices() -> None:
    view = ServerView()
    dev = {"id": "a", "endpoints": {"depth": "tcp://h:1"}}
    assert view.apply_me({**ME, "devices": [dev]}) == (["a"], [], [])
    moved = {"id": "a", "endpoints": {"depth": "tcp://h:2"}}
    assert view.apply_me({**ME, "devices": [moved, {"id": "b", "endpoints": {}}]}) == (
        ["b"],
        [],
        ["a"],
    )
    assert view.apply_me({**ME, "devices": []}) == ([], ["a", "b"], [])
    for bad in (
        None,
        {**ME, "version": 2},
        {**ME, "devices": [{"id": 3}]},
        {**ME, "name": 1},
        {**ME, "endpoints": {"control": 5}},
    ):
        with pytest.raises(ProtocolError):
            view.apply_me(bad)  # type: ignore[arg-type]
