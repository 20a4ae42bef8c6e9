"""ROS 2 mode for a video stream: ``foxglove_msgs/CompressedVideo`` on ``image_raw/foxglove`` and
``ffmpeg_image_transport_msgs/FFMPEGPacket`` on ``image_raw/ffmpeg``, every unit in order from a
keyframe, built only while subscribed; a bridge decodes the units in order for the JPEG topic.
Messages are read back with rosbags, units decoded by FFmpeg in another process."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import numpy as np
import pytest

from rgbdcast import Client, MockDevice, Server
from rgbdcast.protocol import ros2
from rgbdcast.testing import decode_elsewhere, drain, psnr, wait_for

zenoh = pytest.importorskip("zenoh", reason="the [zenoh] extra is not installed")
typesys = pytest.importorskip("rosbags.typesys", reason="rosbags is not installed")
pytest.importorskip("av", reason="the [video] extra (PyAV) is not installed")

from rgbdcast.outlets.ros2 import Ros2Outlet  # noqa: E402
from rgbdcast.outlets.zenoh import ZenohLink, ZenohOptions  # noqa: E402

# The message definitions as their packages publish them (comments dropped: they do not hash).
COMPRESSED_VIDEO_MSG = """builtin_interfaces/Time timestamp
string frame_id
uint8[] data
string format
"""
FFMPEG_PACKET_MSG = """std_msgs/Header header
int32 width
int32 height
string encoding
uint64 pts
uint8 flags
bool is_bigendian
uint8[] data
"""
SIZE = (320, 180)
ENCODING = "h264;yuv420p;bgr8;bgr8"


@pytest.fixture(scope="module")
def store() -> Any:
    st = typesys.get_typestore(typesys.Stores.ROS2_JAZZY)
    types = dict(typesys.get_types_from_msg(COMPRESSED_VIDEO_MSG, ros2.COMPRESSED_VIDEO.name))
    types.update(typesys.get_types_from_msg(FFMPEG_PACKET_MSG, ros2.FFMPEG_PACKET.name))
    st.register(types)
    return st


pytestmark = pytest.mark.threads_only


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _video_server(**kw: Any) -> Server:
    return Server(
        address="127.0.0.1",
        announce=False,
        codecs={"color": "h264"},
        codec_params={"color": {"gop": 300, "encoder": "x264"}},
        **kw,
    )


def _collect(link: ZenohLink, keys: list[str], seconds: float) -> dict[str, list[bytes]]:
    got: dict[str, list[bytes]] = {k: [] for k in keys}
    lock = threading.Lock()

    def keep(key: str, sample: Any) -> None:
        with lock:
            got[key].append(sample.payload.to_bytes())

    subs = [
        link.session.declare_subscriber(k, lambda s, k=k: keep(k, s))  # type: ignore[misc]
        for k in keys
    ]
    time.sleep(seconds)
    for sub in subs:
        sub.undeclare()
    with lock:
        return {k: list(v) for k, v in got.items()}


def test_the_video_message_types_hash_and_read_back_as_their_packages_define_them(
    store: Any,
) -> None:
    for rtype in (ros2.COMPRESSED_VIDEO, ros2.FFMPEG_PACKET):
        assert store.hash_rihs01(rtype.name) == rtype.hash, rtype.name
    m = store.deserialize_cdr(
        ros2.compressed_video(1_500_000_000, "cam", b"\0\0\0\1\x67", "h264"),
        ros2.COMPRESSED_VIDEO.name,
    )
    assert (m.timestamp.sec, m.timestamp.nanosec, m.frame_id, m.format) == (
        1,
        500_000_000,
        "cam",
        "h264",
    )
    assert bytes(m.data) == b"\0\0\0\1\x67"
    for frame_id in ("c", "cam0"):  # the uint64 lands on an 8-byte boundary either way
        raw = ros2.ffmpeg_packet(7, frame_id, 640, 360, ENCODING, 2**40 + 3, True, b"\1\2\3")
        p = store.deserialize_cdr(raw, ros2.FFMPEG_PACKET.name)
        assert (p.header.frame_id, p.width, p.height, p.encoding) == (frame_id, 640, 360, ENCODING)
        assert (p.pts, p.flags, p.is_bigendian, bytes(p.data)) == (2**40 + 3, 1, False, b"\1\2\3")
    p = store.deserialize_cdr(
        ros2.ffmpeg_packet(7, "c", 1, 1, ENCODING, 4, False, b""), ros2.FFMPEG_PACKET.name
    )
    assert p.flags == 0 and len(p.data) == 0


def test_a_video_stream_goes_to_ros2_as_sent_from_a_keyframe_only_while_subscribed(
    store: Any,
) -> None:
    ep = f"tcp/127.0.0.1:{_port()}"
    mock = MockDevice("mock0", color_size=SIZE, fps=30.0, streams=["color"])
    srv = _video_server(name="vid cam", outlets=[Ros2Outlet(ZenohOptions(listen=[ep]), 5)])
    srv.add_device(mock)
    srv.start()
    keys = {
        "fox": ros2.topic_key(5, "/mock0/color/image_raw/foxglove", ros2.COMPRESSED_VIDEO),
        "ff": ros2.topic_key(5, "/mock0/color/image_raw/ffmpeg", ros2.FFMPEG_PACKET),
    }
    try:
        with (
            Client(next(iter(srv.endpoints.values()))) as zc,
            ZenohLink(ZenohOptions(mode="client", connect=[ep])) as link,
        ):
            tokens = [
                str(r.ok.key_expr) for r in link.session.liveliness().get("@ros2_lv/5/**") if r.ok
            ]
            pubs = {t.split("/")[9]: t.split("/")[10:12] for t in tokens if "/MP/" in t}
            assert pubs["%mock0%color%image_raw%foxglove"] == [
                "foxglove_msgs::msg::dds_::CompressedVideo_",
                ros2.COMPRESSED_VIDEO.hash,
            ]
            assert pubs["%mock0%color%image_raw%ffmpeg"] == [
                "ffmpeg_image_transport_msgs::msg::dds_::FFMPEGPacket_",
                ros2.FFMPEG_PACKET.hash,
            ]
            assert "%mock0%color%image_raw%compressed" in pubs  # JPEG for everything else
            raw = zc.subscribe("mock0", "color", decode=False, queue_size=400)
            time.sleep(0.8)  # well past the stream's first keyframe, nobody on ROS
            idle = srv.stats()["ros2"]["mock0/color"]
            got = _collect(link, list(keys.values()), 1.5)
            sent = {u.header.host_time_ns: u for u in drain(raw)}
        stats = srv.stats()
    finally:
        srv.stop()
    assert idle["sent"] == 0 and idle["units_sent"] == 0  # nothing built for nobody
    packets = [store.deserialize_cdr(m, ros2.FFMPEG_PACKET.name) for m in got[keys["ff"]]]
    videos = [store.deserialize_cdr(m, ros2.COMPRESSED_VIDEO.name) for m in got[keys["fox"]]]
    assert len(packets) >= 20 and len(videos) >= 20
    # a subscriber that came mid-chain starts at a keyframe forced for it, then every unit
    assert packets[0].flags == 1 and stats["streams"]["mock0/color"]["keyframes_forced"] >= 1
    pts = [p.pts for p in packets]
    assert pts == list(range(pts[0], pts[0] + len(pts)))
    assert {(p.width, p.height, p.encoding) for p in packets} == {(*SIZE, ENCODING)}
    assert {p.header.frame_id for p in packets} == {"mock0_color_optical_frame"}
    assert {v.format for v in videos} == {"h264"}
    units = []
    for p in packets:  # byte for byte what the ZeroMQ stream sent, as its own flags say
        t = p.header.stamp.sec * 1_000_000_000 + p.header.stamp.nanosec
        unit = sent[t]
        assert bytes(p.data) == bytes(unit.payload) and p.pts == unit.header.au
        assert bool(p.flags) == unit.header.key
        units.append(unit)
    by_time = {v.timestamp.sec * 1_000_000_000 + v.timestamp.nanosec: v for v in videos}
    assert all(bytes(by_time[u.header.host_time_ns].data) == bytes(u.payload) for u in units[:10])
    pics = decode_elsewhere(bytes(p.data) for p in packets)  # FFmpeg, another process
    assert len(pics) == len(packets)
    for pic, unit in zip(pics, units, strict=True):
        assert psnr(pic, mock.render(unit.header.seq)[0].array) > 30
    ros = stats["ros2"]["mock0/color"]
    assert ros["units_sent"] >= len(packets) + len(videos) and ros["errors"] == 0
    assert ros["keyframe_requests"] >= 1 and ros["decoded"] == 0  # a server has its frames


def test_a_bridge_decodes_a_video_stream_in_order_for_the_jpeg_topic(store: Any) -> None:
    """bridge --ros2 has only the units: its JPEG topic shows pictures it decoded in order,
    none of them damaged, and its ffmpeg topic passes the units on from a keyframe."""
    import cv2

    from rgbdcast.bridge import Bridge

    ep = f"tcp/127.0.0.1:{_port()}"
    mock = MockDevice("cam", color_size=SIZE, fps=30.0, streams=["color"])
    keys = {
        "jpeg": ros2.topic_key(0, "/cam/color/image_raw/compressed", ros2.COMPRESSED_IMAGE),
        "ff": ros2.topic_key(0, "/cam/color/image_raw/ffmpeg", ros2.FFMPEG_PACKET),
    }
    with (
        ZenohLink(ZenohOptions(mode="router", listen=[ep])),
        _video_server(name="windows pc") as srv,
    ):
        srv.add_device(mock)
        control = next(iter(srv.endpoints.values()))
        with (
            ZenohLink(ZenohOptions(mode="client", connect=[ep])) as link,
            Client(control) as zc,
        ):
            raw = zc.subscribe("cam", "color", decode=False, queue_size=400)
            bridge = Bridge(link, [control], native=False, ros2_domain=0)
            bridge.start()
            try:
                with ZenohLink(ZenohOptions(mode="client", connect=[ep])) as consumer:
                    assert wait_for(lambda: bridge.bridged.get(control) == ["cam"], 15.0)
                    time.sleep(0.8)
                    got = _collect(consumer, list(keys.values()), 2.0)
                ros = bridge._ros[control].stats()["cam/color"]
            finally:
                bridge.stop()
            seqs = {u.header.host_time_ns: u.header.seq for u in drain(raw)}
        forced = srv.stats()["streams"]["cam/color"]["keyframes_forced"]
    jpegs = [store.deserialize_cdr(m, ros2.COMPRESSED_IMAGE.name) for m in got[keys["jpeg"]]]
    packets = [store.deserialize_cdr(m, ros2.FFMPEG_PACKET.name) for m in got[keys["ff"]]]
    assert len(jpegs) >= 15 and len(packets) >= 15 and forced >= 1
    assert packets[0].flags == 1
    pts = [p.pts for p in packets]
    assert pts == list(range(pts[0], pts[0] + len(pts)))
    for m in jpegs:  # every picture is its source frame's, never a damaged one
        assert m.format == "jpeg"
        t = m.header.stamp.sec * 1_000_000_000 + m.header.stamp.nanosec
        pic = cv2.imdecode(np.frombuffer(m.data.tobytes(), np.uint8), cv2.IMREAD_COLOR)
        assert psnr(pic, mock.render(seqs[t])[0].array) > 28
    assert ros["decoded"] >= len(jpegs) and ros["errors"] == 0 and ros["keyframe_requests"] >= 1
