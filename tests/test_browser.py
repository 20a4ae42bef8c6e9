"""The web viewer in a real browser: Debian's Chromium, headless, driven by Playwright.

``make test`` installs Chromium (``/usr/bin/chromium``); where it is missing these tests skip,
except under CI, where they must run. Screenshots go to ``test-output/``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from rgbdcast import MockDevice, Server
from rgbdcast.outlets.web import WebOutlet
from rgbdcast.testing import UnpluggableMock

CHROMIUM = os.environ.get("RGBDCAST_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # WebGL (the 3-D view) in software: headless Chromium has no GPU here
    "--use-angle=swiftshader",
    "--enable-unsafe-swiftshader",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail(f"CI must have Chromium at {CHROMIUM} (make test installs it)")
        pytest.skip(f"Chromium not found at {CHROMIUM} (Debian: apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


def _server(port: int = 0) -> Server:
    srv = Server(
        address="127.0.0.1", announce=False, name="browser test", outlets=[WebOutlet(port)]
    )
    srv.add_device(UnpluggableMock("mock0", color_size=(640, 360), fps=30.0, prerender=30))
    srv.start()
    return srv


JS_FRAMES = "k => (window.rgbdcast.streams[k] || {frames: 0}).frames"
JS_CANVAS = "k => document.querySelector(`.tile[data-key='${k}'] canvas.img`).toDataURL()"
JS_INKED = """k => {
  const c = document.querySelector(`.tile[data-key='${k}'] canvas.overlay`);
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let n = 0;
  for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++;
  return n;
}"""


def test_live_streams_skeletons_stats_and_a_server_that_goes_and_comes_back(
    browser: Any, output_dir: Path
) -> None:
    srv = _server()
    assert srv.outlet(WebOutlet).viewer is not None
    port = srv.outlet(WebOutlet).viewer.port
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        page.goto(srv.outlet(WebOutlet).viewer.url)
        for stream in ("color", "depth", "infrared", "body"):
            page.wait_for_function(f"({JS_FRAMES})('mock0/{stream}') >= 5", timeout=20_000)
        for stream in ("color", "depth", "infrared"):
            first = page.evaluate(JS_CANVAS, f"mock0/{stream}")
            page.wait_for_timeout(600)
            assert page.evaluate(JS_CANVAS, f"mock0/{stream}") != first, f"{stream} is frozen"
        # the page's depth and infrared pixels are the server's, exactly (its RVL decoder)
        reference = UnpluggableMock("mock0", color_size=(640, 360))
        sums = {
            (f.kind.value, int(f.array.sum(dtype=np.int64)))
            for i in range(30)
            for f in reference.render(i)
            if f.kind.value in ("depth", "infrared")
        }
        for stream in ("depth", "infrared"):
            _, total = page.evaluate(f"window.rgbdcast.streams['mock0/{stream}'].checksum")
            assert (stream, total) in sums
        for stream in ("color", "depth"):  # skeleton over both images
            page.wait_for_function(f"({JS_INKED})('mock0/{stream}') > 200", timeout=10_000)
        page.wait_for_timeout(1500)  # a stats message and a fps window
        fps = page.evaluate("window.rgbdcast.streams['mock0/depth'].fps")
        assert fps > 0
        caption = page.inner_text(".tile[data-key='mock0/depth'] .stats")
        assert "fps" in caption and "Mbit/s" in caption and "dropped" in caption
        assert " m" in page.inner_text(".tile[data-key='mock0/depth'] .legend .hi")
        box = page.locator(".tile[data-key='mock0/depth'] .stack").bounding_box()
        page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] * 0.3)
        readout = page.inner_text(".tile[data-key='mock0/depth'] .readout")
        assert " m at (" in readout or "no reading" in readout
        assert page.get_attribute(".device[data-device='mock0'] .state", "data-state") == "live"
        page.screenshot(path=str(output_dir / "web-viewer.png"), full_page=True)

        srv.stop()  # the server goes away
        page.wait_for_selector("#conn[data-state='gone']", timeout=10_000)
        assert page.is_visible("#banner") and "gone away" in page.inner_text("#banner")
        page.screenshot(path=str(output_dir / "web-viewer-server-gone.png"), full_page=True)

        srv = _server(port)  # ... and comes back on the same address
        page.wait_for_selector("#conn[data-state='live']", timeout=20_000)
        before = page.evaluate(JS_FRAMES, "mock0/depth")
        page.wait_for_function(f"({JS_FRAMES})('mock0/depth') > {before + 5}", timeout=20_000)
        assert not page.is_visible("#banner")
        assert errors == []
    finally:
        page.close()
        if srv.is_running:
            srv.stop()


def test_an_unplugged_device_is_shown_as_such(browser: Any, output_dir: Path) -> None:
    srv = _server()
    assert srv.outlet(WebOutlet).viewer is not None
    page = browser.new_page()
    try:
        page.goto(srv.outlet(WebOutlet).viewer.url)
        page.wait_for_selector(".device[data-device='mock0'] .state[data-state='live']")
        dev = srv.devices[0]
        assert isinstance(dev, UnpluggableMock)
        dev.unplug()
        page.wait_for_selector(
            ".device[data-device='mock0'] .state[data-state='unplugged']", timeout=10_000
        )
        assert "unplugged" in page.inner_text(".device[data-device='mock0'] .cover")
        assert page.is_visible(".device[data-device='mock0'] .notice")
        page.screenshot(path=str(output_dir / "web-viewer-unplugged.png"))
        dev.plug()  # ... and back: the server reopens it by itself
        page.wait_for_selector(
            ".device[data-device='mock0'] .state[data-state='live']", timeout=20_000
        )
    finally:
        page.close()
        srv.stop()


JS_VIEW3D = """() => {
  const v = [...window.rgbdcast3d.views.values()][0];
  const p = v.camera.position;
  return {points: v.points, segments: v.segments, drawn: v.drawn, moved: v.moved,
          camera: [p.x, p.y, p.z], three: window.rgbdcast3d.version,
          fps: window.rgbdcast.streams['mock0/points'].fps};
}"""
JS_LIT = """() => {
  // pixels of the 3-D canvas that are not the background: the cloud is drawn
  const c = document.querySelector(".tile[data-key='mock0/points'] canvas");
  const g = document.createElement('canvas');
  g.width = c.width; g.height = c.height;
  const ctx = g.getContext('2d');
  ctx.drawImage(c, 0, 0);
  const d = ctx.getImageData(0, 0, g.width, g.height).data;
  let n = 0;
  for (let i = 0; i < d.length; i += 4) if (d[i] + d[i + 1] + d[i + 2] > 60) n++;
  return n / (g.width * g.height);
}"""


def test_the_3d_view_shows_the_colored_cloud_and_a_drag_turns_it(
    browser: Any, output_dir: Path
) -> None:
    """three.js (vendored, served from the package) draws the device's colored point cloud with
    the skeleton; dragging orbits the view; the frame rate is shown."""
    srv = _server()
    viewer = srv.outlet(WebOutlet).viewer
    assert viewer is not None
    page = browser.new_page(viewport={"width": 1400, "height": 1300})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        page.goto(viewer.url)
        page.wait_for_function(f"({JS_FRAMES})('mock0/points') >= 3", timeout=30_000)
        before = page.evaluate(JS_VIEW3D)
        assert before["three"] == "187"  # the vendored version, not a CDN's
        assert 30_000 < before["points"] < 60_000  # every second pixel of every second row
        assert before["segments"] >= 20  # the skeleton's bones
        assert page.evaluate(JS_LIT) > 0.2
        tile = page.locator(".tile[data-key='mock0/points']")
        assert "fps" in tile.locator(".stats").inner_text()
        tile.screenshot(path=str(output_dir / "web-viewer-3d.png"))
        shot_before = page.evaluate(
            "() => document.querySelector(\".tile[data-key='mock0/points'] canvas\").toDataURL()"
        )
        box = tile.locator("canvas").bounding_box()
        assert box is not None
        x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
        page.mouse.move(x, y)
        page.mouse.down()
        page.mouse.move(x + 160, y + 50, steps=8)
        page.mouse.up()
        page.wait_for_function(f"({JS_FRAMES})('mock0/points') >= 5", timeout=30_000)
        after = page.evaluate(JS_VIEW3D)
        assert after["moved"] > 0 and after["camera"] != before["camera"]
        shot_after = page.evaluate(
            "() => document.querySelector(\".tile[data-key='mock0/points'] canvas\").toDataURL()"
        )
        assert shot_after != shot_before
        tile.screenshot(path=str(output_dir / "web-viewer-3d-turned.png"))
        assert errors == []
    finally:
        page.close()
        srv.stop()


JS_RIG = """() => {
  const v = [...window.rgbdcast3d.views.values()][0];
  const p = v.bones.geometry.getAttribute('position');
  return {points: v.points, segments: v.segments, cameras: v.cameras,
          legend: v.legend.textContent, bones: p ? Array.from(p.array) : []};
}"""


def test_view_rig_fuses_the_cameras_with_frusta_skeletons_and_skew(
    browser: Any, output_dir: Path, tmp_path: Path
) -> None:
    """``rgbdcast view --rig``'s backend: three posed mocks fused in the rig frame, a frustum
    per camera, the skew of each, and the person's skeleton seen by every camera landing on
    itself (placed by the rig file, the three skeletons agree within centimetres)."""
    from rgbdcast.geometry import Extrinsics
    from rgbdcast.geometry.rigfile import RigCamera, RigFile
    from rgbdcast.outlets.webviewer import WebViewer
    from rgbdcast.rig import save_rig_file
    from rgbdcast.rigview import RigBackend

    poses = [(0.0,) * 6, (0.6, 0.0, 0.2, 0.0, -15.0, 0.0), (-0.5, -0.1, 0.0, 5.0, 12.0, 1.0)]
    srv = Server("127.0.0.1", announce=False)
    devs = [
        MockDevice(f"cam{i}", pose=p, color_size=(640, 360), prerender=30)
        for i, p in enumerate(poses)
    ]
    for d in devs:
        srv.add_device(d)
    srv.start()
    ep = f"tcp://127.0.0.1:{srv.port}"
    path = tmp_path / "rig.json"
    save_rig_file(
        RigFile(
            {f"{ep} {d.id}": RigCamera(Extrinsics.from_matrix(*d.rig_from_depth)) for d in devs}
        ),
        path,
    )
    backend = RigBackend(path)
    viewer = WebViewer("127.0.0.1", 0, backend)
    viewer.start()
    page = browser.new_page(viewport={"width": 1400, "height": 1300})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        backend.start(viewer)
        page.goto(viewer.url)
        page.wait_for_function(f"({JS_FRAMES})('rig/points') >= 3", timeout=30_000)
        got = page.evaluate(JS_RIG)
        assert got["cameras"] == 3 and got["points"] > 60_000
        assert all(f"cam{i}" in got["legend"] for i in range(3)) and "ms" in got["legend"]
        assert got["segments"] >= 3 * 20  # the person, seen by each of the three cameras
        bones = np.asarray(got["bones"]).reshape(3, -1, 3)  # each camera's skeleton in turn
        for other in bones[1:]:
            assert np.linalg.norm(other - bones[0], axis=1).mean() < 0.05
        assert page.evaluate(JS_LIT.replace("mock0/points", "rig/points")) > 0.2
        page.locator(".tile[data-key='rig/points']").screenshot(
            path=str(output_dir / "web-viewer-rig.png")
        )
        assert errors == []
    finally:
        page.close()
        backend.stop()
        viewer.stop()
        srv.stop()


JS_VIDEO = """k => {
  const s = window.rgbdcast.streams[k] || {};
  const c = document.querySelector(`.tile[data-key='${k}'] canvas.img`);
  const img = c && c.width ? c.getContext('2d').getImageData(0, 0, c.width, c.height) : null;
  const px = img ? Array.from(img.data) : [];
  return {mode: window.rgbdcast.video, frames: s.videoFrames || 0, seq: s.videoShownSeq,
          fmt: s.last ? s.last.fmt : null, w: c ? c.width : 0, h: c ? c.height : 0, px: px};
}"""


def _video_server() -> tuple[Server, MockDevice]:
    mock = MockDevice("mock0", color_size=(320, 180), fps=30.0, streams=["color"])
    srv = Server(
        address="127.0.0.1",
        announce=False,
        name="video test",
        outlets=[WebOutlet(0)],
        codecs={"color": "h264"},
    )
    srv.add_device(mock)
    srv.start()
    return srv, mock


@pytest.mark.parametrize("webcodecs", [True, False])
def test_video_color_is_decoded_in_the_browser_or_sent_as_jpeg(
    browser: Any, webcodecs: bool
) -> None:
    """Chromium decodes the H.264 units itself (WebCodecs) and draws the mock's pictures; a
    page without WebCodecs gets JPEG of the same frames instead."""
    pytest.importorskip("av", reason="the [video] extra (PyAV) is not installed")
    srv, mock = _video_server()
    viewer = srv.outlet(WebOutlet).viewer
    assert viewer is not None
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    page = context.new_page()
    if not webcodecs:  # as in a browser without WebCodecs
        page.add_init_script("delete window.VideoDecoder; delete window.EncodedVideoChunk;")
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        page.goto(f"http://127.0.0.1:{viewer.port}/")
        key = "mock0/color"
        if webcodecs:
            page.wait_for_function(f"(window.rgbdcast.streams['{key}'] || {{}}).videoFrames > 20")
        else:
            page.wait_for_function(f"(window.rgbdcast.streams['{key}'] || {{}}).frames > 20")
        state = page.evaluate(JS_VIDEO, key)
        assert state["mode"] == ("h264" if webcodecs else "none")
        assert state["fmt"] == ("h264" if webcodecs else "jpeg")
        assert page.evaluate("window.rgbdcast.errors") == [] and errors == []
        if webcodecs:
            rgba = np.array(state["px"], np.uint8).reshape(state["h"], state["w"], 4)
            truth = mock.render(state["seq"])[0].array[:, :, ::-1].astype(np.float32)
            err = np.mean((rgba[:, :, :3].astype(np.float32) - truth) ** 2)
            assert 10 * np.log10(255**2 / err) > 28, "the drawn picture is not the frame's"
            stats = srv.stats()["streams"]["mock0/color"]
            assert stats["keyframes_forced"] >= 1  # asked for when the page started decoding
    finally:
        context.close()
        srv.stop()
