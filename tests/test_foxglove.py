"""Live Foxglove: a server's devices as Foxglove topics, checked with a client written from the
published WebSocket protocol (rgbdcast.bench.fgclient, which the bench uses too) that decodes
every message with the protobuf schema the server advertises. The server is Foxglove's SDK."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from rgbdcast import Client, MockDevice, Server, StreamKind
from rgbdcast.errors import UsageError
from rgbdcast.frames import JointType, TrackingState
from rgbdcast.geometry.pointcloud import point_cloud
from rgbdcast.net.security import ServerKeys, keygen
from rgbdcast.testing import drain, wait_for

pytest.importorskip("foxglove", reason="the [foxglove] extra is not installed")
pytest.importorskip("google.protobuf", reason="protobuf is not installed (the [dev] extra)")

from rgbdcast.bench.fgclient import FoxgloveClient
from rgbdcast.outlets import foxglovedev
from rgbdcast.outlets.foxglove import FoxgloveOptions, FoxgloveOutlet
from rgbdcast.protocol.foxglovelayout import layout

DEVICE = "fox0"
ALL = [
    f"/{DEVICE}/color",
    f"/{DEVICE}/depth",
    f"/{DEVICE}/infrared",
    f"/{DEVICE}/bodies",
    f"/{DEVICE}/points",
    f"/{DEVICE}/color/calibration",
    f"/{DEVICE}/depth/calibration",
    f"/{DEVICE}/infrared/calibration",
    "/tf",
]


def _serve(**options: Any) -> tuple[Server, FoxgloveOutlet, MockDevice]:
    mock = MockDevice(DEVICE, color_size=(320, 180), fps=30.0)
    outlet = FoxgloveOutlet(FoxgloveOptions(address="127.0.0.1:0", **options))
    srv = Server(address="127.0.0.1", announce=False, name="fox", outlets=[outlet])
    srv.add_device(mock)
    srv.start()
    return srv, outlet, mock


@pytest.fixture
def fox() -> Iterator[tuple[Server, FoxgloveOutlet, MockDevice]]:
    srv, outlet, mock = _serve()
    yield srv, outlet, mock
    srv.stop()


def _url(outlet: FoxgloveOutlet) -> str:
    assert outlet.publishing is not None
    return outlet.publishing.server.url


def test_every_topic_is_advertised_with_foxglove_schemas(fox: Any) -> None:
    srv, outlet, _ = fox
    with FoxgloveClient(_url(outlet)) as c:
        chans = c.wait_topics(set(ALL))
        assert c.server_info["name"] == "fox"
    want = {
        "color": "foxglove.CompressedImage",
        "depth": "foxglove.RawImage",
        "infrared": "foxglove.RawImage",
        "bodies": "foxglove.SceneUpdate",
        "points": "foxglove.PointCloud",
        "calibration": "foxglove.CameraCalibration",
        "tf": "foxglove.FrameTransforms",
    }
    for topic, ch in chans.items():
        assert ch.schema_name == want[topic.rsplit("/", 1)[1]], topic
        assert ch.encoding == "protobuf"
    assert srv._me_payload()["endpoints"]["foxglove"] == _url(outlet)


def _zmq_frames(
    srv: Server, kinds: list[str], seconds: float, fc: FoxgloveClient
) -> tuple[list[Any], dict[tuple[str, int], Any]]:
    """Foxglove messages for *seconds*, and the frames a ZeroMQ subscriber got meanwhile, by
    (stream, capture time)."""
    with Client(next(iter(srv.endpoints.values()))) as zc:
        subs = [zc.subscribe(DEVICE, k, queue_size=200) for k in kinds]
        time.sleep(0.3)
        got = fc.collect(seconds)
        frames = {}
        for sub in subs:
            for f in drain(sub):
                frames[(f.kind.value, f.host_time_ns)] = f
    return got, frames


def test_images_are_the_streams_own_bytes_and_pixels(fox: Any) -> None:
    srv, outlet, mock = fox
    with FoxgloveClient(_url(outlet)) as c:
        c.wait_topics(set(ALL))
        c.subscribe([f"/{DEVICE}/color", f"/{DEVICE}/depth", f"/{DEVICE}/infrared"])
        got, frames = _zmq_frames(srv, ["depth"], 1.5, c)
        with Client(next(iter(srv.endpoints.values()))) as zc:
            raw = zc.subscribe(DEVICE, "color", decode=False, queue_size=200)
            more = c.collect(1.0)
            sent = {f.header.host_time_ns: bytes(f.payload) for f in drain(raw)}
    by_topic: dict[str, list[Any]] = {}
    for m in got + more:
        by_topic.setdefault(m.topic, []).append(m)
    assert set(by_topic) == {f"/{DEVICE}/color", f"/{DEVICE}/depth", f"/{DEVICE}/infrared"}
    # color: the JPEG the ZeroMQ subscribers get, byte for byte (matched by capture time)
    matched = [m for m in by_topic[f"/{DEVICE}/color"] if m.log_time_ns in sent]
    assert len(matched) >= 5, "too few color messages matched a ZeroMQ frame by capture time"
    for m in matched:
        assert m.decoded.data == sent[m.log_time_ns]
        assert m.decoded.format == "jpeg"
        assert m.decoded.frame_id == f"{DEVICE}_color_optical_frame"
    # depth: the mock's pixels, exactly as the ZeroMQ subscriber decodes them
    depths = [m for m in by_topic[f"/{DEVICE}/depth"] if ("depth", m.log_time_ns) in frames]
    assert len(depths) >= 5
    for m in depths:
        d = m.decoded
        assert (d.width, d.height, d.encoding, d.step) == (512, 424, "16UC1", 1024)
        img = np.frombuffer(d.data, "<u2").reshape(424, 512)
        truth = next(
            f
            for f in mock.render(frames[("depth", m.log_time_ns)].seq)
            if f.kind is StreamKind.depth
        )
        assert np.array_equal(img, truth.array), "depth pixels differ"
    ir = by_topic[f"/{DEVICE}/infrared"][0].decoded
    assert (ir.encoding, ir.frame_id) == ("mono16", f"{DEVICE}_depth_optical_frame")


def test_calibration_points_bodies_and_transforms(fox: Any) -> None:
    srv, outlet, mock = fox
    cal = mock.calibration()
    assert cal is not None
    with FoxgloveClient(_url(outlet)) as c:
        c.wait_topics(set(ALL))
        c.subscribe(
            [f"/{DEVICE}/points", f"/{DEVICE}/bodies", f"/{DEVICE}/color/calibration", "/tf"]
        )
        got, frames = _zmq_frames(srv, ["depth", "color", "body"], 2.0, c)
    topics = {m.topic for m in got}
    assert topics == {
        f"/{DEVICE}/points",
        f"/{DEVICE}/bodies",
        f"/{DEVICE}/color/calibration",
        "/tf",
    }
    info = next(m.decoded for m in got if m.topic.endswith("/calibration"))
    assert (info.width, info.height) == (cal.color.width, cal.color.height)
    assert list(info.K) == pytest.approx(
        [cal.color.fx, 0, cal.color.cx, 0, cal.color.fy, cal.color.cy, 0, 0, 1]
    )
    assert list(info.D) == pytest.approx(list(cal.color.distortion))
    tf, view = next(m.decoded for m in got if m.topic == "/tf").transforms
    assert (tf.parent_frame_id, tf.child_frame_id) == (cal.depth_frame, cal.color_frame)
    # and the upright view under the depth camera: ahead is its +x, up (optical -y) its +z
    assert (view.parent_frame_id, view.child_frame_id) == (cal.depth_frame, f"{DEVICE}_view")
    q = view.rotation
    w, x, y, z = q.w, q.x, q.y, q.z
    r = np.array(  # the view's axes in the optical frame, as columns
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )
    np.testing.assert_allclose(r.T @ [0, 0, 1], [1, 0, 0], atol=1e-12)  # ahead
    np.testing.assert_allclose(r.T @ [0, -1, 0], [0, 0, 1], atol=1e-12)  # up
    np.testing.assert_allclose(r.T @ [-1, 0, 0], [0, 1, 0], atol=1e-12)  # left
    pose = cal.depth_to_color.inverse()
    assert [tf.translation.x, tf.translation.y, tf.translation.z] == pytest.approx(
        list(pose.translation)
    )
    # the point cloud is the geometry code's own, for the same frameset
    cloud_msg = next(
        m for m in got if m.topic.endswith("/points") and ("depth", m.log_time_ns) in frames
    )
    pc = cloud_msg.decoded
    assert pc.point_stride == 16 and pc.frame_id == cal.depth_frame
    assert [f.name for f in pc.fields] == ["x", "y", "z", "red", "green", "blue", "alpha"]
    packed = np.frombuffer(pc.data, np.uint8).reshape(-1, 16)
    pts = packed[:, :12].copy().view("<f4").reshape(-1, 3)
    depth = frames[("depth", cloud_msg.log_time_ns)]
    # the server converts the frame it captured: the color before its JPEG, as the mock made it
    color = next(f for f in mock.render(depth.seq) if f.kind is StreamKind.color)
    ref = point_cloud(depth.array, color.array, cal, decimate=2)
    assert np.array_equal(pts, ref.points)
    assert np.array_equal(packed[:, 12:15], ref.colors)
    # bodies: one entity per tracked body, with spheres for its known joints and its bones
    bodies = [m for m in got if m.topic.endswith("/bodies") and ("body", m.log_time_ns) in frames]
    update = bodies[-1].decoded
    truth = frames[("body", bodies[-1].log_time_ns)].bodies
    assert len(update.entities) == len(truth) >= 1
    for entity, body in zip(update.entities, truth, strict=True):
        assert entity.frame_id == cal.depth_frame
        assert {kv.key: kv.value for kv in entity.metadata} == {
            "tracking_id": str(body.tracking_id)
        }
        known = [j for j in body.joints if j.state is not TrackingState.NotTracked]
        assert len(entity.spheres) == len(known)
        head = body.joints[JointType.Head].position
        assert any(
            (s.pose.position.x, s.pose.position.y, s.pose.position.z)
            == pytest.approx((head[0], -head[1], head[2]), abs=1e-6)
            for s in entity.spheres
        )
        # in the depth optical frame: each joint lands on its depth pixel through the intrinsics
        k = cal.depth
        for sphere, joint in zip(entity.spheres, known, strict=True):
            p = sphere.pose.position
            uv = (k.fx * p.x / p.z + k.cx, k.fy * p.y / p.z + k.cy)
            assert uv == pytest.approx(joint.depth_xy, abs=0.5)
        line = entity.lines[0]
        kind = line.DESCRIPTOR.fields_by_name["type"].enum_type.values_by_number[line.type].name
        assert kind == "LINE_LIST" and len(line.points) >= 2 and len(line.points) % 2 == 0


def test_a_topic_nobody_subscribes_is_not_converted_and_no_stream_is_encoded_for_it(
    fox: Any,
) -> None:
    srv, outlet, _ = fox
    with FoxgloveClient(_url(outlet)) as c:
        c.wait_topics(set(ALL))
        time.sleep(0.5)
        topics = srv.stats()["foxglove"]["topics"]
        assert all(v["sent"] == 0 for v in topics.values()), topics
        skipped = {k: v["skipped_idle"] for k, v in srv.stats()["streams"].items()}
        time.sleep(0.5)  # no stream is encoded for a Foxglove client that watches nothing
        streams = srv.stats()["streams"]
        assert all(streams[k]["skipped_idle"] > n for k, n in skipped.items()), streams
        # streams ZeroMQ clients take are encoded for them; Foxglove still converts none
        with Client(next(iter(srv.endpoints.values()))) as zc:
            subs = [zc.subscribe(DEVICE, k, decode=False) for k in ("color", "depth", "body")]
            assert all(s.latest(timeout=5.0) is not None for s in subs)
            time.sleep(0.5)
        topics = srv.stats()["foxglove"]["topics"]
        assert all(v["sent"] == 0 and v["dropped"] == 0 for v in topics.values()), topics
        c.subscribe([f"/{DEVICE}/depth"])
        assert len(c.collect(0.5)) > 3
        assert srv.stats()["foxglove"]["topics"][f"{DEVICE}/depth"]["sent"] > 3


def test_a_secure_server_refuses_foxglove_off_loopback_without_tls(tmp_path: Any) -> None:
    keygen(tmp_path / "keys")
    keys = ServerKeys.from_dir(tmp_path / "keys")
    outlet = FoxgloveOutlet(FoxgloveOptions(address="192.0.2.1:0"))
    with pytest.raises(UsageError, match="foxglove-allow-insecure"):
        Server(address="127.0.0.1", announce=False, secure=keys, outlets=[outlet])
    FoxgloveOptions(address="192.0.2.1:0", allow_insecure=True).check(True)
    FoxgloveOptions(address="127.0.0.1:0").check(True)
    with pytest.raises(UsageError, match="both a certificate and its key"):
        FoxgloveOptions(tls_cert=b"x").check(False)


def test_a_client_that_stops_reading_costs_only_its_own_bounded_backlog() -> None:
    import psutil

    srv, outlet, _ = _serve(backlog=8)
    try:
        stalled = FoxgloveClient(_url(outlet), max_queue=1)
        stalled.wait_topics(set(ALL))
        stalled.subscribe(ALL)  # and never reads again
        rss0 = psutil.Process().memory_info().rss
        with (
            FoxgloveClient(_url(outlet)) as reader,
            Client(next(iter(srv.endpoints.values()))) as zc,
        ):
            reader.wait_topics(set(ALL))
            reader.subscribe(ALL)
            zsub = zc.subscribe(DEVICE, "depth", queue_size=2, decode=False)
            time.sleep(1.0)  # the stalled client's socket buffers fill
            zframes = zsub.stats.frames
            counts = reader.tally(3.0)
            zframes, zdropped = zsub.stats.frames - zframes, zsub.stats.dropped
            rss1 = psutil.Process().memory_info().rss
        # the reader keeps (nearly) the mock's 30 fps of images and bodies while the other stalls
        for topic in (f"/{DEVICE}/depth", f"/{DEVICE}/color", f"/{DEVICE}/bodies"):
            assert counts[topic] >= 45, counts
        assert counts["/tf"] >= 2 and counts[f"/{DEVICE}/points"] >= 10, counts
        assert zframes >= 80 and zdropped == 0, f"ZeroMQ: {zframes} frames, {zdropped} lost"
        stats = srv.stats()["foxglove"]
        # the SDK dropped the stalled client's oldest and said so (at most once every 30 s in a
        # process: this is the first test in the run whose client stalls)
        assert stats["slow_client_notices"] >= 1, stats
        assert rss1 - rss0 < 150e6, f"memory grew by {(rss1 - rss0) / 1e6:.0f} MB"
        stalled.close()
    finally:
        srv.stop()


def test_small_topics_still_arrive_while_large_ones_flood_a_slow_client(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """1080p color, raw depth and infrared and the cloud to a client reading 40 messages a
    second (far less than the nine topics' 250): its queue holds messages, not bytes, so bodies
    and transforms get their share instead of waiting behind the images."""
    # the client takes about one message in six of every topic: /tf at its usual 1 Hz gives
    # 5 or 6 in the window, too few to tell a share from bad luck (1 arrived in 1 run of 6);
    # at 10 Hz a fair share is about 8 of 50
    monkeypatch.setattr(foxglovedev, "TF_PERIOD_S", 0.1)
    mock = MockDevice(DEVICE, fps=30.0, prerender=4)  # 1920x1080 color
    outlet = FoxgloveOutlet(FoxgloveOptions(address="127.0.0.1:0", backlog=16))
    srv = Server(address="127.0.0.1", announce=False, name="flood", outlets=[outlet])
    srv.add_device(mock)
    srv.start()
    try:
        with FoxgloveClient(_url(outlet), max_queue=4) as c:
            c.wait_topics(set(ALL))
            c.subscribe(ALL)
            counts: dict[str, int] = {}
            deadline = time.monotonic() + 5.0
            while time.monotonic() < deadline:
                for topic, n in c.tally(1.0, most=1).items():  # one message at a time ...
                    counts[topic] = counts.get(topic, 0) + n
                time.sleep(0.025)  # ... as a slow consumer takes them
        assert counts.get(f"/{DEVICE}/color", 0) >= 5, counts  # the large ones do arrive
        assert counts.get(f"/{DEVICE}/bodies", 0) >= 10, counts
        assert counts.get("/tf", 0) >= 2, counts
    finally:
        srv.stop()


def test_a_client_that_connects_again_gets_fresh_frames_not_a_backlog(fox: Any) -> None:
    _srv, outlet, _ = fox
    with FoxgloveClient(_url(outlet), max_queue=1) as c:
        c.wait_topics(set(ALL))
        c.subscribe([f"/{DEVICE}/depth", f"/{DEVICE}/color"])
        time.sleep(1.0)  # unread: its backlog fills
    with FoxgloveClient(_url(outlet)) as again:
        again.wait_topics(set(ALL))
        again.subscribe([f"/{DEVICE}/depth", f"/{DEVICE}/color"])
        first = again.next_message()
        assert time.time_ns() - first.log_time_ns < 0.5e9, "a stale frame came first"


def test_bridge_shows_servers_elsewhere_and_keeps_colliding_device_ids_apart() -> None:
    from rgbdcast.bridge import Bridge
    from rgbdcast.devices.scene import world_pose
    from rgbdcast.geometry import Extrinsics
    from rgbdcast.geometry.rigfile import RigCamera, RigFile
    from rgbdcast.outlets.foxglove import FoxglovePublishing, FoxgloveServer

    servers = []
    for name in ("left", "right"):
        srv = Server(address="127.0.0.1", announce=False, name=name)
        srv.add_device(MockDevice(DEVICE, color_size=(320, 180), fps=30.0))
        srv.start()
        servers.append(srv)
    fox = FoxglovePublishing(FoxgloveServer(FoxgloveOptions(address="127.0.0.1:0"), "bridge"))
    endpoints = [next(iter(s.endpoints.values())) for s in servers]
    placed = Extrinsics.from_matrix(*world_pose(0.6, 0.0, 0.2, 0.0, -15.0, 0.0))
    rig = RigFile({f"{endpoints[0]} {DEVICE}": RigCamera(placed)})  # the left one is placed
    bridge = Bridge(None, endpoints, native=False, foxglove=fox, rig_file=rig)
    try:
        bridge.start()
        assert wait_for(
            lambda: (
                sorted(fox.devices) == sorted([DEVICE, f"right_{DEVICE}"])
                or sorted(fox.devices) == sorted([DEVICE, f"left_{DEVICE}"])
            ),
            15.0,
        ), fox.devices
        other = next(d for d in fox.devices if d != DEVICE)
        with FoxgloveClient(fox.server.url) as c:
            c.wait_topics({f"/{DEVICE}/color", f"/{other}/depth", f"/{DEVICE}/points", "/tf"})
            c.subscribe(
                [
                    f"/{DEVICE}/color",
                    f"/{other}/depth",
                    f"/{DEVICE}/points",
                    f"/{other}/bodies",
                    "/tf",
                ]
            )
            got = c.collect(2.5)
        topics = {m.topic for m in got}
        assert topics == {
            f"/{DEVICE}/color",
            f"/{other}/depth",
            f"/{DEVICE}/points",
            f"/{other}/bodies",
            "/tf",
        }
        left = DEVICE if other.startswith("right") else other
        edges = {
            (t.parent_frame_id, t.child_frame_id): t
            for m in got
            if m.topic == "/tf"
            for t in m.decoded.transforms
        }
        in_rig = edges[("rig", f"{left}_depth_optical_frame")]
        t, q = in_rig.translation, in_rig.rotation
        np.testing.assert_allclose((t.x, t.y, t.z), (0.6, 0.0, 0.2), atol=1e-9)
        np.testing.assert_allclose((q.x, q.y, q.z, q.w), placed.quaternion(), atol=1e-9)
        for dev in (DEVICE, other):  # each device's own optical frames, whether placed or not
            assert (f"{dev}_depth_optical_frame", f"{dev}_color_optical_frame") in edges
        depth = next(m.decoded for m in got if m.topic == f"/{other}/depth")
        assert depth.frame_id == f"{other}_depth_optical_frame"
        cloud = next(m.decoded for m in got if m.topic == f"/{DEVICE}/points")
        assert len(cloud.data) > 16 * 10_000
        # a server going away takes its device's topics with it
        gone = servers.pop()
        gone.stop()
        assert wait_for(lambda: len(fox.devices) == 1, 15.0), fox.devices
    finally:
        bridge.stop()
        fox.close()
        for srv in servers:
            srv.stop()


def _cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rgbdcast", *args], capture_output=True, text=True, timeout=timeout
    )


@pytest.mark.parametrize(
    "args,needle",
    [
        (["bridge", "tcp://127.0.0.1:9"], "say where to bridge to"),
        (
            ["serve", "--no-announce", "--foxglove", "0", "--foxglove-tls-cert", "/nonexistent"],
            "/nonexistent",
        ),
        (
            ["bridge", "--foxglove", "--foxglove-listen", "192.0.2.1:0"],
            "cannot start the Foxglove server",
        ),
    ],
)
def test_foxglove_flags_fail_in_one_readable_line(args: list[str], needle: str) -> None:
    res = _cli(*args, timeout=30)
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert needle in res.stderr and len(lines) <= 3, res.stderr


def test_serve_foxglove_from_the_command_line(tmp_path: Any) -> None:
    keys = tmp_path / "keys"
    assert _cli("keygen", "--out", str(keys)).returncode == 0
    refused = _cli("serve", "--no-announce", "--secure", str(keys), "--foxglove", "0.0.0.0:0")
    assert refused.returncode == 2 and "--foxglove-allow-insecure" in refused.stderr
    assert "Traceback" not in refused.stderr
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "rgbdcast",
            "serve",
            "--no-announce",
            "--port",
            "0",
            "--color-size",
            "320x180",
            "--foxglove",
            "127.0.0.1:0",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        url = None
        for _ in range(20):
            line = proc.stdout.readline()
            if "Foxglove: open connection" in line:
                url = line.split("connection ", 1)[1].split()[0]
                break
        assert url and url.startswith("ws://127.0.0.1:"), url
        with FoxgloveClient(url) as c:
            c.wait_topics({"/mock0/color", "/mock0/points", "/tf"})
            c.subscribe(["/mock0/color"])
            assert c.next_message().decoded.format == "jpeg"
    finally:
        proc.terminate()
        proc.communicate(timeout=15)
    assert proc.returncode == 0


def test_a_recording_shows_the_same_topics_as_a_live_server(tmp_path: Any) -> None:
    """record writes what the live server shows under the same names (bodies as the same
    SceneUpdate, beside the JSON a replay reads), so one Foxglove layout serves both."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
    from mcap.reader import make_reader

    from rgbdcast import codecs
    from rgbdcast.protocol.envelope import build_header, parse_encoded
    from rgbdcast.record import McapRecorder, Recording

    dev = MockDevice(DEVICE, color_size=(320, 180))
    cal = dev.calibration()
    assert cal is not None
    path = tmp_path / "r.mcap"
    sent = []
    with McapRecorder(path) as rec:
        rec.write_calibration(cal, time.time_ns())
        for i in range(3):
            frames = dev.render(i)
            for frame in frames:
                name = codecs.default_codec(frame.kind)
                codec = codecs.get(name, frame.kind)
                payload = codec.encode(frame.data, {})
                shape = codecs.output_shape(codec, frame.shape)
                header = build_header(frame, name, len(payload), time.time_ns(), shape)
                rec.write(parse_encoded([header, payload]))
            by_kind = {f.kind: f for f in frames}
            depth, color = by_kind[StreamKind.depth], by_kind[StreamKind.color]
            cloud = point_cloud(depth.array, color.array, cal, decimate=2)
            rec.write_points(DEVICE, depth.host_time_ns, cloud.points, cloud.colors)
            sent.append(by_kind[StreamKind.body])
    with open(path, "rb") as f:
        reader = make_reader(f)
        summary = reader.get_summary()
        assert summary is not None
        topics = {c.topic for c in summary.channels.values()}
        assert set(ALL) <= topics, set(ALL) - topics
        assert _layout_topics(layout([DEVICE])) <= topics
        scenes = [
            (schema, msg)
            for schema, channel, msg in reader.iter_messages(topics=[f"/{DEVICE}/bodies"])
        ]
    assert len(scenes) == 3
    schema = scenes[0][0]
    assert (schema.name, schema.encoding) == ("foxglove.SceneUpdate", "protobuf")
    pool = descriptor_pool.DescriptorPool()
    for fd in descriptor_pb2.FileDescriptorSet.FromString(schema.data).file:
        pool.Add(fd)
    cls = message_factory.GetMessageClass(pool.FindMessageTypeByName("foxglove.SceneUpdate"))
    for (_s, msg), body_frame in zip(scenes, sent, strict=True):
        update = cls.FromString(msg.data)
        assert len(update.entities) == len(body_frame.bodies) >= 1
        assert update.entities[0].frame_id == f"{DEVICE}_depth_optical_frame"
    # and a replay still reads the bodies from the JSON topic, as older files have them
    bodies = [f for _t, f in Recording(path).scan().frames() if f.kind is StreamKind.body]
    assert [len(b.bodies) for b in bodies] == [len(b.bodies) for b in sent]


def _layout_topics(doc: dict[str, Any]) -> set[str]:
    out = set()
    for config in doc["configById"].values():
        mode = config.get("imageMode", {})
        out |= {mode[k] for k in ("imageTopic", "calibrationTopic") if k in mode}
        out |= set(config.get("topics", {}))
    return out


def _leaves(node: Any) -> list[str]:
    if isinstance(node, str):
        return [node]
    assert set(node) <= {"direction", "first", "second", "splitPercentage"}, node
    assert node["direction"] in ("row", "column")
    return _leaves(node["first"]) + _leaves(node["second"])


def test_the_shipped_layout_names_what_the_server_publishes() -> None:
    import json
    from pathlib import Path

    shipped = json.loads((Path(__file__).parent.parent / "docs/foxglove-layout.json").read_text())
    assert shipped == layout(["mock0"]), "docs/foxglove-layout.json: rgbdcast foxglove-layout -o"
    doc = layout([DEVICE, "other"])
    leaves = _leaves(doc["layout"])
    assert sorted(leaves) == sorted(doc["configById"])  # every panel placed, none missing
    assert {leaf.split("!")[0] for leaf in leaves} == {"Image", "3D"}
    # the topics are the live server's (the other device's are its own, by the same names)
    assert _layout_topics(layout([DEVICE])) <= set(ALL)
    assert _layout_topics(doc) - _layout_topics(layout([DEVICE])) == {
        "/other/points",
        "/other/bodies",
    }
    images = [c["imageMode"] for c in doc["configById"].values() if "imageMode" in c]
    depth = next(m for m in images if m["imageTopic"].endswith("/depth"))
    assert depth["colorMode"] == "colormap" and depth["minValue"] < depth["maxValue"]
    color = next(
        c
        for c in doc["configById"].values()
        if c.get("imageMode", {}).get("imageTopic") == f"/{DEVICE}/color"
    )
    assert color["topics"][f"/{DEVICE}/bodies"]["visible"] is True  # the skeleton overlaid
    scene = doc["configById"]["3D!rgbdcast"]
    assert scene["followTf"] == f"{DEVICE}_view"  # published on /tf (test above)


def test_the_foxglove_bench_suite_measures_and_records(tmp_path: Any) -> None:
    out = tmp_path / "B.md"
    res = _cli(
        "bench",
        "--suite",
        "foxglove",
        "--duration",
        "2",
        "--warmup",
        "1",
        "--write",
        str(out),
        timeout=300,
    )
    assert res.returncode == 0, res.stderr
    text = out.read_text()
    assert "<!-- bench:foxglove -->" in text and "Command: `rgbdcast bench" in text
    rows = [ln for ln in text.splitlines() if ln.startswith("| `/mock0/")]
    assert {r.split("`")[1] for r in rows} >= {"/mock0/color", "/mock0/points", "/mock0/bodies"}
    for row in rows:  # the reader got frames on every topic, alone and beside a stalled client
        assert all(float(c) > 5 for c in row.split("|")[2:4]), row
    m = re.search(r"(\d+) of (\d+) color images compared were byte", text)
    assert m and int(m.group(2)) > 10 and m.group(1) == m.group(2), text
    assert "fox-points" in text and "tokio-rt-worker" in text


def test_video_color_goes_out_as_compressed_video_from_a_keyframe() -> None:
    """A video stream is shown as sent (``CompressedVideo``, the ZeroMQ units byte for byte),
    and a Foxglove client that starts mid-chain gets a keyframe forced for it first."""
    pytest.importorskip("av", reason="the [video] extra (PyAV) is not installed")
    from rgbdcast.codecs.video import VideoDecoder, is_keyframe

    mock = MockDevice(DEVICE, color_size=(320, 180), fps=30.0, streams=["color"])
    outlet = FoxgloveOutlet(FoxgloveOptions(address="127.0.0.1:0"))
    srv = Server(
        address="127.0.0.1",
        announce=False,
        name="fox",
        outlets=[outlet],
        codecs={"color": "h264"},
        codec_params={"color": {"gop": 300, "encoder": "x264"}},
    )
    srv.add_device(mock)
    srv.start()
    try:
        with Client(next(iter(srv.endpoints.values()))) as zc:
            raw = zc.subscribe(DEVICE, "color", decode=False, queue_size=400)
            time.sleep(0.8)  # the stream is well past its first keyframe
            with FoxgloveClient(_url(outlet)) as c:
                chans = c.wait_topics({f"/{DEVICE}/color"})
                assert chans[f"/{DEVICE}/color"].schema_name == "foxglove.CompressedVideo"
                c.subscribe([f"/{DEVICE}/color"])
                got = [m for m in c.collect(1.5) if m.topic == f"/{DEVICE}/color"]
            sent = {u.header.host_time_ns: u for u in drain(raw, 400)}
        stats = srv.stats()
    finally:
        srv.stop()
    assert len(got) >= 20
    assert {m.decoded.format for m in got} == {"h264"}
    assert is_keyframe("h264", got[0].decoded.data)
    assert stats["streams"][f"{DEVICE}/color"]["keyframes_forced"] >= 1
    dec = VideoDecoder("h264")
    for i, m in enumerate(got):
        unit = sent[m.log_time_ns]
        assert m.decoded.data == bytes(unit.payload)
        picture = dec.feed(m.decoded.data, i, i == 0, (180, 320, 3))
        truth = mock.render(unit.header.seq)[0].array.astype(np.float32)
        err = np.mean((picture.astype(np.float32) - truth) ** 2)
        assert 10 * np.log10(255**2 / err) > 30
    assert dec.gaps == 0 and dec.decoded == len(got)
    topic = stats["foxglove"]["topics"][f"{DEVICE}/color"]
    assert topic["keyframe_requests"] >= 1


def test_a_bridged_video_stream_reaches_foxglove_from_a_keyframe() -> None:
    """Through a bridge the units arrive as received; the Foxglove client's first one is a
    keyframe the bridge asked the origin server for."""
    pytest.importorskip("av", reason="the [video] extra (PyAV) is not installed")
    from rgbdcast.bridge import Bridge
    from rgbdcast.codecs.video import VideoDecoder, is_keyframe
    from rgbdcast.outlets.foxglove import FoxglovePublishing, FoxgloveServer

    srv = Server(
        address="127.0.0.1",
        announce=False,
        name="origin",
        codecs={"color": "h264"},
        codec_params={"color": {"gop": 300, "encoder": "x264"}},
    )
    srv.add_device(MockDevice(DEVICE, color_size=(320, 180), fps=30.0, streams=["color"]))
    srv.start()
    fox = FoxglovePublishing(FoxgloveServer(FoxgloveOptions(address="127.0.0.1:0"), "bridge"))
    bridge = Bridge(None, [next(iter(srv.endpoints.values()))], native=False, foxglove=fox)
    try:
        bridge.start()
        assert wait_for(lambda: fox.devices == [DEVICE], 15.0), fox.devices
        with FoxgloveClient(fox.server.url) as c:
            c.wait_topics({f"/{DEVICE}/color"})
            time.sleep(0.8)
            c.subscribe([f"/{DEVICE}/color"])
            got = [m for m in c.collect(1.5) if m.topic == f"/{DEVICE}/color"]
        forced = srv.stats()["streams"][f"{DEVICE}/color"]["keyframes_forced"]
    finally:
        bridge.stop()
        fox.close()
        srv.stop()
    assert len(got) >= 10 and is_keyframe("h264", got[0].decoded.data)
    assert forced >= 1
    dec = VideoDecoder("h264")
    assert all(
        dec.feed(m.decoded.data, i, i == 0, (180, 320, 3)) is not None for i, m in enumerate(got)
    )
