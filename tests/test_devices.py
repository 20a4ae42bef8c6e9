import ctypes
import itertools
import sys
import threading
import time

import numpy as np
import pytest

from rgbdcast import Frame, MockDevice, MockKinect, StreamKind, UsageError
from rgbdcast.testing import check_device


def test_mock_passes_the_conformance_suite() -> None:
    frames = check_device(MockDevice("conf", color_size=(320, 180)))
    assert set(frames) == set(StreamKind)


@pytest.mark.parametrize("streams", [["depth"], ["color", "body"], ["infrared"]])
def test_mock_streams_resolution_and_rate_are_configurable(streams: list[str]) -> None:
    dev = MockDevice("cfg", streams=streams, fps=60, color_size=(160, 90), depth_size=(128, 106))
    assert [k.value for k in dev.streams] == streams
    frames = check_device(dev)
    for kind, seen in frames.items():
        if kind is not StreamKind.body:
            info = dev.streams[kind]
            assert seen[0].array.shape[:2] == (info.height, info.width)
        assert info.fps == 60 if kind is not StreamKind.body else True


def test_mock_is_deterministic_and_moving() -> None:
    a, b = MockDevice("a"), MockDevice("b")
    fa, fb = a.render(42), b.render(42)
    for x, y in zip(fa, fb, strict=True):
        if x.kind is StreamKind.body:
            assert x.bodies[0].joints[3].position == y.bodies[0].joints[3].position
        else:
            assert np.array_equal(x.array, y.array)
    later = {f.kind: f for f in a.render(57)}
    now = {f.kind: f for f in fa}
    for kind in (StreamKind.color, StreamKind.depth):
        changed = np.count_nonzero(now[kind].array != later[kind].array)
        assert changed > 0.01 * now[kind].array.size  # the scene moves


def test_mock_looks_like_a_room_with_a_person() -> None:
    frames = {f.kind: f for f in MockDevice("r").render(10)}
    depth = frames[StreamKind.depth].array
    assert 3500 < np.median(depth[:150]) < 4500  # the back wall at ~4 m
    body = frames[StreamKind.body].bodies[0]
    assert len(body.joints) == 25
    for joint in body.joints:
        u, v = (round(c) for c in joint.depth_xy)
        assert 0 <= u < 512 and 0 <= v < 424, joint.name
    # joints on the torso and head land on the person: surface within a body radius in front
    for name in ("SpineBase", "SpineMid", "SpineShoulder", "Head"):
        joint = body.joint(name)
        u, v = (round(c) for c in joint.depth_xy)
        surface = int(depth[v, u])
        assert 0 < joint.position[2] * 1000 - surface < 200, (name, surface, joint.position)
    # and the person is in front of the wall there
    head = body.joint("Head")
    u, v = (round(c) for c in head.depth_xy)
    assert depth[v, u] < 3500
    infrared = frames[StreamKind.infrared].array
    assert infrared[v, u] > np.median(infrared[:100])  # nearer surfaces reflect more


def test_prerendered_mock_loops_its_frames() -> None:
    dev = MockDevice("p", streams=["depth"], depth_size=(64, 48), prerender=3, fps=100)
    frames = check_device(dev, frames_per_stream=7)[StreamKind.depth]
    assert np.array_equal(frames[0].array, frames[3].array)
    assert [f.seq for f in frames] == sorted({f.seq for f in frames})


def test_a_late_mock_runs_late_and_never_bursts(monkeypatch: pytest.MonkeyPatch) -> None:
    """On a fake clock: after a stall the mock sends its next frame one period after the late one
    (sending it at once made a pair that the encoder's latest-frame slot halves), and numbers its
    frames on without a gap."""
    from rgbdcast.devices import mock as mock_module

    period = 10_000_000  # 100 fps
    clock = [0]

    class FakeTime:
        @staticmethod
        def monotonic_ns() -> int:
            return clock[0]

    def fake_wait(deadline: int, stop: threading.Event) -> bool:
        clock[0] = max(clock[0], deadline)
        return True

    monkeypatch.setattr(mock_module, "time", FakeTime)
    monkeypatch.setattr(mock_module, "wait_until", fake_wait)
    dev = MockDevice("late", streams=["body"], fps=100)
    dev._t0, dev._index = 0, 0
    stop = threading.Event()
    sent: list[tuple[int, int]] = []  # (when, seq)
    for stall_ms in (0, 0, 17, 0, 0, 35, 0, 0, 13, 0):
        clock[0] += stall_ms * 1_000_000  # the device thread was held up before its next frame
        [frame] = dev._capture(stop)
        sent.append((clock[0], frame.seq))
    assert [seq for _, seq in sent] == list(range(10))
    gaps_ms = [(b - a) / 1e6 for (a, _), (b, _) in itertools.pairwise(sent)]
    # 7 ms late: a period after it; 25 ms late: the same; 3 ms late (under half a period): kept
    # on the clock, so the next one is 7 ms later
    assert gaps_ms == [10, 17, 10, 10, 35, 10, 10, 13, 7]
    assert min(gaps_ms) * 1e6 >= period // 2


def test_bad_mock_settings_are_usage_errors() -> None:
    with pytest.raises(UsageError):
        MockDevice(fps=0)
    with pytest.raises(UsageError):
        MockDevice(color_size=(1, 1))
    with pytest.raises(UsageError):
        MockDevice(streams=["sonar"])
    assert MockKinect().unique_kinect_id


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="timer slack is a Linux setting")
def test_device_threads_sleep_with_fine_timer_slack() -> None:
    """A source pacing itself by the clock asks for 1 us timer slack, not Linux's 50 us."""
    libc = ctypes.CDLL(None, use_errno=True)
    seen: list[int] = []

    class Probe(MockDevice):
        def _capture(self, stop: threading.Event) -> list[Frame]:
            seen.append(libc.prctl(30, 0, 0, 0, 0))  # PR_GET_TIMERSLACK of this thread
            return super()._capture(stop)

    with Probe(streams=["depth"], fps=200, max_frames=3):
        deadline = time.monotonic() + 5
        while len(seen) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
    assert seen and set(seen) == {1000}
    assert libc.prctl(30, 0, 0, 0, 0) != 1000  # this thread left as it was
