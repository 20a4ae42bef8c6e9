"""ROS 2 mode: rmw_zenoh's key expressions, liveliness tokens and attachments, checked against
the reference values of its design document (ros2/rmw_zenoh docs/design.md at 99a6a2bd), and a
subscriber that applies rmw_zenoh's rules to what a running server publishes. CDR is read back
with rosbags (an independent implementation). No ROS 2 node runs here: see docs/zenoh.md."""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
from typing import Any

import numpy as np
import pytest

from rgbdcast import MockDevice, Server, StreamKind
from rgbdcast.codecs.png import decode_png
from rgbdcast.errors import ProtocolError
from rgbdcast.frames import Intrinsics
from rgbdcast.protocol import ros2
from rgbdcast.testing import wait_for

zenoh = pytest.importorskip("zenoh", reason="the [zenoh] extra is not installed")
typesys = pytest.importorskip("rosbags.typesys", reason="rosbags is not installed")

from rgbdcast.outlets.ros2 import Ros2Outlet  # noqa: E402
from rgbdcast.outlets.zenoh import ZenohLink, ZenohOptions  # noqa: E402

DOC_HASH = "RIHS01_df668c740482bbd48fb39d76a70dfd4bd59db1288021743503259e948f6b1a18"


pytestmark = pytest.mark.threads_only


@pytest.fixture(scope="module")
def store() -> Any:
    return typesys.get_typestore(typesys.Stores.ROS2_JAZZY)


# -- the design document's own examples ------------------------------------------------------


def test_topic_keys_match_the_design_document() -> None:
    assert ros2.topic_key(0, "/chatter", ros2.STRING) == (
        f"0/chatter/std_msgs::msg::dds_::String_/{DOC_HASH}"
    )
    assert ros2.topic_key(0, "/robot1/chatter", ros2.STRING) == (
        f"0/robot1/chatter/std_msgs::msg::dds_::String_/{DOC_HASH}"
    )
    for bad in ("chatter", "/a//b", "/a/"):
        with pytest.raises(ProtocolError):
            ros2.topic_key(0, bad, ros2.STRING)


def test_liveliness_tokens_match_the_design_document() -> None:
    assert ros2.liveliness_key(
        2, "aac3178e146ba6f1fc6e6a4085e77f21", 0, 0, "NN", "", "listener"
    ) == ("@ros2_lv/2/aac3178e146ba6f1fc6e6a4085e77f21/0/0/NN/%/%/listener")
    talker = ros2.liveliness_key(
        2,
        "8b20917502ee955ac4476e0266340d5c",
        0,
        10,
        "MP",
        "",
        "talker",
        topic="/chatter",
        rtype=ros2.STRING,
        qos=ros2.qos_key(depth=7),
    )
    assert talker == (
        "@ros2_lv/2/8b20917502ee955ac4476e0266340d5c/0/10/MP/%/%/talker/%chatter/"
        f"std_msgs::msg::dds_::String_/{DOC_HASH}/::,7:,:,:,,"
    )
    assert ros2.qos_key(best_effort=True, depth=5) == "2::,5:,:,:,,"


def test_type_hashes_are_rosbags_rihs01_which_reproduces_the_document(store: Any) -> None:
    assert store.hash_rihs01("std_msgs/msg/String") == DOC_HASH
    for rtype in (ros2.IMAGE, ros2.COMPRESSED_IMAGE, ros2.CAMERA_INFO, ros2.STRING):
        assert store.hash_rihs01(rtype.name) == rtype.hash, rtype.name


def test_attachment_layout() -> None:
    gid = bytes(range(16))
    raw = ros2.attachment(7, 1_700_000_000_123_456_789, gid)
    assert len(raw) == 33 and raw[:8] == (7).to_bytes(8, "little") and raw[16] == 16
    assert ros2.parse_attachment(raw) == (7, 1_700_000_000_123_456_789, gid)
    with pytest.raises(ProtocolError):
        ros2.parse_attachment(raw[:-1])


def test_messages_read_back_with_rosbags(store: Any) -> None:
    depth = np.arange(12, dtype="<u2").reshape(3, 4)
    m = store.deserialize_cdr(
        ros2.image(1_500_000_000, "cam", 3, 4, "16UC1", 8, depth.data), ros2.IMAGE.name
    )
    assert (m.header.stamp.sec, m.header.stamp.nanosec, m.header.frame_id) == (
        1,
        500_000_000,
        "cam",
    )
    assert (m.height, m.width, m.encoding, m.is_bigendian, m.step) == (3, 4, "16UC1", 0, 8)
    assert np.array_equal(np.frombuffer(m.data.tobytes(), "<u2").reshape(3, 4), depth)
    m = store.deserialize_cdr(
        ros2.compressed_image(5, "c", "jpeg", b"\xff\xd8x"), ros2.COMPRESSED_IMAGE.name
    )
    assert m.format == "jpeg" and bytes(m.data) == b"\xff\xd8x"
    intr = Intrinsics(width=512, height=424, fx=365.5, fy=365.0, cx=256.0, cy=212.0)
    m = store.deserialize_cdr(ros2.camera_info(5, "c", intr), ros2.CAMERA_INFO.name)
    assert (m.width, m.height, m.k[0], m.k[4], m.k[2], m.p[10]) == (
        512,
        424,
        365.5,
        365.0,
        256.0,
        1.0,
    )
    assert m.roi.do_rectify is False and m.binning_x == 0
    assert store.deserialize_cdr(ros2.string("héllo"), ros2.STRING.name).data == "héllo"


# -- a running server, seen by a subscriber that applies rmw_zenoh's rules ---------------------


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_server_appears_as_ros2_topics(store: Any) -> None:
    ep = f"tcp/127.0.0.1:{_port()}"
    srv = Server(
        address="127.0.0.1",
        announce=False,
        name="lab cam",
        outlets=[Ros2Outlet(ZenohOptions(listen=[ep]), 3)],
    )
    srv.add_device(MockDevice("mock0", color_size=(160, 90), prerender=30))
    srv.start()
    reference = MockDevice("mock0", color_size=(160, 90))
    depth_sums = {
        int(f.array.sum())
        for i in range(30)
        for f in reference.render(i)
        if f.kind.value == "depth"
    }
    got: dict[str, list[tuple[bytes, bytes]]] = {}
    lock = threading.Lock()

    def keep(sample: Any) -> None:
        with lock:
            got.setdefault(str(sample.key_expr), []).append(
                (sample.payload.to_bytes(), sample.attachment.to_bytes())
            )

    try:
        with ZenohLink(ZenohOptions(mode="client", connect=[ep])) as link:
            # the node and its publishers, as rmw_zenoh's graph cache would find them
            tokens = [
                str(r.ok.key_expr) for r in link.session.liveliness().get("@ros2_lv/3/**") if r.ok
            ]
            node = [t for t in tokens if "/NN/" in t]
            assert node == [
                f"@ros2_lv/3/{srv.outlet(Ros2Outlet).node.session_id}/0/0/NN/%/%/lab_cam"
            ]
            pubs = {t.split("/")[9]: t.split("/") for t in tokens if "/MP/" in t}
            assert set(pubs) == {
                "%mock0%color%image_raw%compressed",
                "%mock0%color%camera_info",
                "%mock0%depth%image_raw",
                "%mock0%depth%image_raw%compressedDepth",
                "%mock0%depth%camera_info",
                "%mock0%infrared%image_raw",
                "%mock0%infrared%camera_info",
                "%mock0%bodies",
                "%tf_static",
                "%mock0%depth_registered%image_raw",
                "%mock0%depth_registered%camera_info",
                "%mock0%points",
            }
            depth_tok = pubs["%mock0%depth%image_raw"]
            assert len(depth_tok) == 13 and depth_tok[5] == "MP" and depth_tok[8] == "lab_cam"
            assert depth_tok[10:] == [
                "sensor_msgs::msg::dds_::Image_",
                ros2.IMAGE.hash,
                "2::,5:,:,:,,",
            ]
            # subscribe on the data keys, exactly as a ROS subscription would
            keys = {
                "depth": ros2.topic_key(3, "/mock0/depth/image_raw", ros2.IMAGE),
                "info": ros2.topic_key(3, "/mock0/depth/camera_info", ros2.CAMERA_INFO),
                "color": ros2.topic_key(
                    3, "/mock0/color/image_raw/compressed", ros2.COMPRESSED_IMAGE
                ),
                "bodies": ros2.topic_key(3, "/mock0/bodies", ros2.STRING),
                "packed": ros2.topic_key(
                    3, "/mock0/depth/image_raw/compressedDepth", ros2.COMPRESSED_IMAGE
                ),
            }
            subs = [link.session.declare_subscriber(k, keep) for k in keys.values()]
            assert wait_for(lambda: all(len(got.get(k, [])) >= 10 for k in keys.values()), 15.0)
            for s in subs:
                s.undeclare()
        with lock:
            depth = got[keys["depth"]]
        seqs, gids = [], set()
        for payload, att in depth:
            seq, stamp, gid = ros2.parse_attachment(att)
            seqs.append(seq)
            gids.add(gid)
            assert abs(stamp - time.time_ns()) < 60e9
            m = store.deserialize_cdr(payload, ros2.IMAGE.name)
            assert (m.encoding, m.width, m.height, m.step) == ("16UC1", 512, 424, 1024)
            assert int(np.frombuffer(m.data.tobytes(), "<u2").sum()) in depth_sums  # exact pixels
        assert len(gids) == 1 and seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
        info = store.deserialize_cdr(got[keys["info"]][0][0], ros2.CAMERA_INFO.name)
        assert info.width == 512 and info.k[0] > 0 and info.header.frame_id == m.header.frame_id
        jpeg = store.deserialize_cdr(got[keys["color"]][0][0], ros2.COMPRESSED_IMAGE.name)
        assert jpeg.format == "jpeg" and bytes(jpeg.data[:2]) == b"\xff\xd8"
        packed = store.deserialize_cdr(got[keys["packed"]][0][0], ros2.COMPRESSED_IMAGE.name)
        assert packed.format == "16UC1; compressedDepth png"
        raw = packed.data.tobytes()
        assert struct.unpack("<iff", raw[:12]) == (0, 0.0, 0.0)  # ConfigHeader, INV_DEPTH
        assert int(decode_png(raw[12:]).astype(np.int64).sum()) in depth_sums
        bodies = json.loads(store.deserialize_cdr(got[keys["bodies"]][0][0], ros2.STRING.name).data)
        assert len(bodies) == 1 and "Head" in bodies[0]["joints"]
    finally:
        srv.stop()


def test_the_geometry_appears_as_ros2_topics_depth_image_proc_and_rviz_expect(
    store: Any,
) -> None:
    """/tf_static between the optical frames, both camera_infos, depth_registered in the color
    camera, and an organised PointCloud2 (xyz + rgb) that matches the mock's frames."""
    ep = f"tcp/127.0.0.1:{_port()}"
    srv = Server(
        address="127.0.0.1",
        announce=False,
        name="geo cam",
        outlets=[Ros2Outlet(ZenohOptions(listen=[ep]), 4)],
    )
    dev = MockDevice("mock0", color_size=(320, 180), prerender=10)
    srv.add_device(dev)
    srv.start()
    reference = {
        i: next(f.array for f in dev.render(i) if f.kind is StreamKind.depth) for i in range(10)
    }
    got: dict[str, list[bytes]] = {}
    lock = threading.Lock()

    def keep(sample: Any) -> None:
        with lock:
            got.setdefault(str(sample.key_expr), []).append(sample.payload.to_bytes())

    keys = {
        "tf": ros2.topic_key(4, "/tf_static", ros2.TF_MESSAGE),
        "points": ros2.topic_key(4, "/mock0/points", ros2.POINT_CLOUD2),
        "registered": ros2.topic_key(4, "/mock0/depth_registered/image_raw", ros2.IMAGE),
        "reg_info": ros2.topic_key(4, "/mock0/depth_registered/camera_info", ros2.CAMERA_INFO),
        "color_info": ros2.topic_key(4, "/mock0/color/camera_info", ros2.CAMERA_INFO),
    }
    try:
        with ZenohLink(ZenohOptions(mode="client", connect=[ep])) as link:
            subs = [link.session.declare_subscriber(k, keep) for k in keys.values()]
            assert wait_for(lambda: all(len(got.get(k, [])) >= 2 for k in keys.values()), 20.0)
            for sub in subs:
                sub.undeclare()
            stats = srv.stats()["ros2"]["mock0/geometry"]
    finally:
        srv.stop()
    cal = dev.calibration()
    assert cal.color is not None and cal.depth_to_color is not None
    tf = store.deserialize_cdr(got[keys["tf"]][0], ros2.TF_MESSAGE.name).transforms[0]
    assert tf.header.frame_id == "mock0_depth_optical_frame"
    assert tf.child_frame_id == "mock0_color_optical_frame"
    from rgbdcast.devices.scene import MOCK_COLOR_CENTER

    t = tf.transform.translation
    np.testing.assert_allclose((t.x, t.y, t.z), MOCK_COLOR_CENTER, atol=1e-9)
    color_info = store.deserialize_cdr(got[keys["color_info"]][0], ros2.CAMERA_INFO.name)
    assert color_info.header.frame_id == "mock0_color_optical_frame"
    assert (color_info.width, color_info.k[0]) == (320, cal.color.fx)
    reg_info = store.deserialize_cdr(got[keys["reg_info"]][0], ros2.CAMERA_INFO.name)
    registered = store.deserialize_cdr(got[keys["registered"]][-1], ros2.IMAGE.name)
    assert (registered.width, registered.height, registered.encoding) == (320, 180, "16UC1")
    assert registered.header.frame_id == reg_info.header.frame_id == "mock0_color_optical_frame"
    dr = np.frombuffer(registered.data.tobytes(), "<u2").reshape(180, 320)
    assert (dr > 0).mean() > 0.6 and 1500 < np.median(dr[dr > 0]) < 4500
    cloud = store.deserialize_cdr(got[keys["points"]][-1], ros2.POINT_CLOUD2.name)
    assert (cloud.height, cloud.width, cloud.point_step) == (424, 512, 16)
    assert [f.name for f in cloud.fields] == ["x", "y", "z", "rgb"]
    assert cloud.header.frame_id == "mock0_depth_optical_frame"
    pts = np.frombuffer(cloud.data.tobytes(), np.float32).reshape(424, 512, 4)
    z = pts[..., 2]
    # organised: the pixel's own depth, in metres, from one of the mock's frames
    match = [i for i, d in reference.items() if np.allclose(z[d > 0], d[d > 0] / 1000.0)]
    assert len(match) == 1
    rgb = pts[..., 3].view(np.uint32)
    assert (rgb[np.isfinite(z)] > 0).mean() > 0.8  # colored where the color camera sees
    assert stats["sent"] >= 2 and stats["errors"] == 0


def test_a_bridge_puts_a_zeromq_server_on_ros2(store: Any) -> None:
    from rgbdcast.bridge import Bridge

    ep = f"tcp/127.0.0.1:{_port()}"
    reference = MockDevice("cam", color_size=(160, 90), streams=["depth"])
    sums = {int(f.array.sum()) for i in range(30) for f in reference.render(i)}
    got: list[bytes] = []
    with (
        ZenohLink(ZenohOptions(mode="router", listen=[ep])),
        Server(address="127.0.0.1", announce=False, name="windows pc") as srv,
    ):
        srv.add_device(MockDevice("cam", color_size=(160, 90), streams=["depth"], prerender=30))
        control = next(iter(srv.endpoints.values()))
        with ZenohLink(ZenohOptions(mode="client", connect=[ep])) as link:
            bridge = Bridge(link, [control], native=False, ros2_domain=0)
            bridge.start()
            try:
                with ZenohLink(ZenohOptions(mode="client", connect=[ep])) as consumer:
                    key = ros2.topic_key(0, "/cam/depth/image_raw", ros2.IMAGE)
                    sub = consumer.session.declare_subscriber(
                        key, lambda s: got.append(s.payload.to_bytes())
                    )
                    assert wait_for(lambda: len(got) >= 5, 15.0)
                    sub.undeclare()
            finally:
                bridge.stop()
    m = store.deserialize_cdr(got[-1], ros2.IMAGE.name)
    assert m.encoding == "16UC1" and int(np.frombuffer(m.data.tobytes(), "<u2").sum()) in sums


def test_a_bridge_publishes_the_geometry_it_learns_over_the_wire(store: Any) -> None:
    """bridge --ros2 on a Linux box: the calibration comes from the upstream server (who/me and
    the calibration request), and /tf_static and /points come out as if served locally; with a
    rig file, /tf_static also places the camera in the rig frame."""
    from rgbdcast.bridge import Bridge
    from rgbdcast.devices.scene import world_pose
    from rgbdcast.geometry import Extrinsics
    from rgbdcast.geometry.rigfile import RigCamera, RigFile

    ep = f"tcp/127.0.0.1:{_port()}"
    got: dict[str, list[bytes]] = {}
    keys = {
        "tf": ros2.topic_key(0, "/tf_static", ros2.TF_MESSAGE),
        "points": ros2.topic_key(0, "/cam/points", ros2.POINT_CLOUD2),
    }
    with (
        ZenohLink(ZenohOptions(mode="router", listen=[ep])),
        Server(address="127.0.0.1", announce=False, name="windows pc") as srv,
    ):
        srv.add_device(MockDevice("cam", color_size=(320, 180), streams=["depth", "color"]))
        control = next(iter(srv.endpoints.values()))
        placed = Extrinsics.from_matrix(*world_pose(0.6, 0.0, 0.2, 0.0, -15.0, 0.0))
        rig = RigFile({f"{control} cam": RigCamera(placed)})
        with ZenohLink(ZenohOptions(mode="client", connect=[ep])) as link:
            bridge = Bridge(link, [control], native=False, ros2_domain=0, rig_file=rig)
            bridge.start()
            try:
                with ZenohLink(ZenohOptions(mode="client", connect=[ep])) as consumer:
                    subs = [
                        consumer.session.declare_subscriber(
                            k, lambda s, k=k: got.setdefault(k, []).append(s.payload.to_bytes())
                        )
                        for k in keys.values()
                    ]
                    assert wait_for(lambda: all(got.get(k) for k in keys.values()), 20.0)
                    for sub in subs:
                        sub.undeclare()
            finally:
                bridge.stop()
    tf, in_rig = store.deserialize_cdr(got[keys["tf"]][0], ros2.TF_MESSAGE.name).transforms
    assert (tf.header.frame_id, tf.child_frame_id) == (
        "cam_depth_optical_frame",
        "cam_color_optical_frame",
    )
    assert (in_rig.header.frame_id, in_rig.child_frame_id) == ("rig", "cam_depth_optical_frame")
    t, q = in_rig.transform.translation, in_rig.transform.rotation
    np.testing.assert_allclose((t.x, t.y, t.z), (0.6, 0.0, 0.2), atol=1e-9)
    np.testing.assert_allclose((q.x, q.y, q.z, q.w), placed.quaternion(), atol=1e-9)
    cloud = store.deserialize_cdr(got[keys["points"]][-1], ros2.POINT_CLOUD2.name)
    pts = np.frombuffer(cloud.data.tobytes(), np.float32).reshape(424, 512, 4)
    assert np.isfinite(pts[..., 2]).mean() > 0.9


def test_compressed_depth_rvl_layout() -> None:
    from rgbdcast import codecs

    depth = np.random.default_rng(3).integers(0, 4000, (6, 10), dtype=np.uint16)
    depth[2] = 0
    fmt, data = ros2.compressed_depth(depth, "rvl")
    assert fmt == "16UC1; compressedDepth rvl"
    assert struct.unpack("<iffII", data[:20]) == (0, 0.0, 0.0, 10, 6)
    assert np.array_equal(codecs.get("rvl").decode(data[20:], (6, 10), "<u2"), depth)
    with pytest.raises(ProtocolError):
        ros2.compressed_depth(depth, "jpeg")
