// rgbdcast web viewer. Talks to /ws (see rgbdcast/protocol/viewer.py for the messages).
// Each frame is drawn, then acked; the server sends a stream's next frame only after the ack.
"use strict";

const $ = (sel, root = document) => root.querySelector(sel);
const el = (tag, attrs = {}, ...kids) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v; else if (k === "text") e.textContent = v; else e.setAttribute(k, v);
  }
  for (const kid of kids) e.append(kid);
  return e;
};

// What tests (and curious users, from the console) can read.
const view = window.rgbdcast = {
  conn: "connecting", hello: null, devices: [], streams: {}, sources: [], errors: [],
  reconnects: 0, lastStats: null,
};

const decoder = new TextDecoder();
const BODY_COLORS = ["#ff595e", "#ffca3a", "#8ac926", "#1982c4", "#6a4c93", "#ff924c"];
const TURBO = buildTurbo();
let ws = null;
let backoff = 500;
let shownDevices = "";

function buildTurbo() {
  // Polynomial fit of the Turbo colormap (Google, Apache-2.0), 256 RGB entries.
  const lut = new Uint8Array(256 * 3);
  for (let i = 0; i < 256; i++) {
    const x = i / 255;
    const r = 0.13572138 + x * (4.6153926 + x * (-42.66032258 + x * (132.13108234 + x * (-152.94239396 + x * 59.28637943))));
    const g = 0.09140261 + x * (2.19418839 + x * (4.84296658 + x * (-14.18503333 + x * (4.27729857 + x * 2.82956604))));
    const b = 0.1066733 + x * (12.64194608 + x * (-60.58204836 + x * (110.36276771 + x * (-89.90310912 + x * 27.34824973))));
    lut[i * 3] = Math.max(0, Math.min(255, r * 255));
    lut[i * 3 + 1] = Math.max(0, Math.min(255, g * 255));
    lut[i * 3 + 2] = Math.max(0, Math.min(255, b * 255));
  }
  return lut;
}

function setConn(state, text) {
  view.conn = state;
  const pill = $("#conn");
  pill.className = "pill " + state;
  pill.dataset.state = state;
  pill.textContent = text || state;
  const banner = $("#banner");
  if (state === "gone") {
    banner.hidden = false;
    banner.textContent = "The server has gone away. Reconnecting… (frames below are the last ones received)";
  } else {
    banner.hidden = true;
  }
}

function connect() {
  const proto = location.protocol === "https:" ? "wss" : "ws";
  ws = new WebSocket(`${proto}://${location.host}/ws${location.search}`);
  ws.binaryType = "arraybuffer";
  ws.onopen = () => { backoff = 500; setConn("live", "connected"); };
  ws.onclose = () => {
    setConn("gone", "server gone");
    for (const s of Object.values(view.streams)) s.inFlight = false;
    view.reconnects++;
    setTimeout(connect, backoff);
    backoff = Math.min(backoff * 2, 5000);
  };
  ws.onmessage = (ev) => {
    if (typeof ev.data === "string") onText(JSON.parse(ev.data));
    else onFrame(ev.data).catch((err) => view.errors.push(String(err)));
  };
}

function send(msg) {
  if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(msg));
}

function onText(msg) {
  if (msg.type === "hello") {
    view.hello = msg;
    $("#server-name").textContent = msg.server;
    document.title = `${msg.server} — rgbdcast viewer`;
    $("#sources").hidden = msg.mode !== "view";
    offerVideo();
  } else if (msg.type === "devices") {
    showDevices(msg.devices);
  } else if (msg.type === "stats") {
    view.lastStats = msg;
    if (msg.sources) showSources(msg.sources);
    const s = msg.server || {};
    $("#footer-stats").textContent = `viewers ${s.viewers ?? "?"} · frames sent to browsers ${s.frames_sent ?? "?"}`;
  } else if (msg.type === "error") {
    view.errors.push(msg.reason);
  }
}

function showSources(sources) {
  const json = JSON.stringify(sources);
  if (json === JSON.stringify(view.sources)) return;
  view.sources = sources;
  const list = $("#source-list");
  list.replaceChildren();
  if (!sources.length) list.append(el("li", { class: "hint", text: "Looking for servers…" }));
  for (const src of sources) {
    const box = el("input", { type: "checkbox", "data-source": src.id });
    box.checked = !!src.selected;
    box.onchange = () => send({ type: "select", source: src.id, on: box.checked });
    const state = src.state ? ` — ${src.state}` : "";
    list.append(el("li", {}, el("label", {}, box, ` ${src.name} (${src.id})${state}`)));
  }
}

function showDevices(devices) {
  view.devices = devices;
  const shape = JSON.stringify(devices.map((d) => [d.id, Object.keys(d.streams)]));
  if (shape !== shownDevices) {
    shownDevices = shape;
    const main = $("#devices");
    main.replaceChildren();
    if (!devices.length) main.append(el("p", { class: "hint", text: "No devices." }));
    for (const d of devices) main.append(deviceCard(d));
  }
  for (const d of devices) updateDeviceState(d);
}

function deviceCard(d) {
  const card = el("section", { class: "device", "data-device": d.id });
  card.append(el("h2", {}, el("span", { class: "name", text: d.name ? `${d.name} (${d.id})` : d.id }),
    el("span", { class: "pill state" })));
  card.append(el("p", { class: "notice", hidden: "" }));
  const tiles = el("div", { class: "tiles" });
  for (const kind of ["color", "depth", "infrared", "body", "points"]) {
    if (!(kind in d.streams)) continue;
    tiles.append(tile(d, kind));
  }
  card.append(tiles);
  return card;
}

function tile(d, kind) {
  const key = `${d.id}/${kind}`;
  const fig = el("figure", { class: "tile", "data-stream": kind, "data-key": key });
  const stack = el("div", { class: "stack" });
  const cover = el("div", { class: "cover", hidden: "" });
  if (kind === "body") {
    stack.append(el("div", { class: "bodies-list", text: "no bodies" }));
  } else if (kind === "points") {
    stack.append(el("div", { class: "three", title: "drag to orbit, wheel to zoom, right-drag to pan" }));
  } else {
    const canvas = el("canvas", { class: "img", width: d.streams[kind].width || 320, height: d.streams[kind].height || 240 });
    stack.append(canvas);
    if (kind === "color" || kind === "depth") {
      stack.append(el("canvas", { class: "overlay", width: canvas.width, height: canvas.height }));
    }
  }
  stack.append(cover);
  fig.append(stack);
  const info = d.streams[kind];
  const label = kind === "points" ? "3-D · colored point cloud, skeleton"
    : `${kind} ${info.width ? `${info.width}×${info.height}` : ""} ${info.codec ? `· ${info.codec}` : ""}`;
  fig.append(el("figcaption", {}, el("span", { class: "label", text: label }), el("span", { class: "stats", text: "waiting…" })));
  if (kind === "depth") {
    const legend = el("canvas", { class: "legend-bar", width: 256, height: 1 });
    const ctx = legend.getContext("2d");
    const img = ctx.createImageData(256, 1);
    for (let i = 0; i < 256; i++) img.data.set([TURBO[i * 3], TURBO[i * 3 + 1], TURBO[i * 3 + 2], 255], i * 4);
    ctx.putImageData(img, 0, 0);
    fig.append(el("div", { class: "legend" }, el("span", { class: "lo", text: "–" }), legend,
      el("span", { class: "hi", text: "–" }), el("span", { class: "readout", text: "point at the image for the distance" })));
    stack.addEventListener("mousemove", (ev) => readout(key, stack, ev));
    stack.addEventListener("mouseleave", () => { $(".readout", fig).textContent = "point at the image for the distance"; });
  }
  view.streams[key] = view.streams[key] || newStream();
  return fig;
}

function newStream() {
  return { frames: 0, bytes: 0, times: [], latencies: [], fps: 0, latencyMs: 0, mbps: 0, last: null, lastAt: 0, range: null, bodies: null, bodiesAt: 0 };
}

function updateDeviceState(d) {
  const card = document.querySelector(`.device[data-device="${CSS.escape(d.id)}"]`);
  if (!card) return;
  const pill = $(".state", card);
  const notice = $(".notice", card);
  let state = d.state;
  let text = state;
  if (state === "live") {
    const now = performance.now();
    const stale = Object.keys(d.streams).every((k) => {
      const s = view.streams[`${d.id}/${k}`];
      return !s || !s.lastAt || now - s.lastAt > 3000;
    });
    if (stale && view.conn === "live") { state = "stale"; text = "no frames"; }
  }
  if (state === "unplugged") text = "unplugged";
  pill.className = `pill state ${state}`;
  pill.dataset.state = state;
  pill.textContent = text;
  notice.hidden = state === "live";
  notice.textContent = {
    unplugged: "The device stopped delivering (unplugged or failed). The server keeps trying to reopen it; it will reappear here by itself.",
    starting: "The device is starting…",
    stale: "No frames for a few seconds.",
  }[state] || "";
  for (const c of card.querySelectorAll(".cover")) {
    c.hidden = state === "live" || state === "stale";
    c.textContent = state === "unplugged" ? "device unplugged — waiting for it to come back" : state;
  }
}

async function inflate(bytes) {
  const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("deflate"));
  return new Response(stream).arrayBuffer();
}

// RVL (Wilson 2017; docs/protocol.md): runs of zeros and non-zeros, each non-zero pixel the
// zigzagged difference from the previous one, numbers in 3-bit groups inside nibbles, nibbles
// filling little-endian 32-bit words from the top.
function rvlDecode(bytes, n) {
  const aligned = new Uint8Array(Math.ceil(bytes.byteLength / 4) * 4);
  aligned.set(bytes);
  const words = new Uint32Array(aligned.buffer);
  const out = new Uint16Array(n);
  let wi = 0, word = 0, left = 0;
  const vle = () => {
    let value = 0, shift = 0, nib;
    do {
      if (left === 0) {
        if (wi >= words.length) throw new Error("RVL data ends early");
        word = words[wi++]; left = 8;
      }
      nib = word >>> 28; word = (word << 4) >>> 0; left--;
      value += (nib & 7) * 2 ** shift; shift += 3;
    } while (nib & 8);
    return value;
  };
  let i = 0, prev = 0;
  while (i < n) {
    i += vle();
    if (i >= n) break;
    const count = vle();
    if (i + count > n) throw new Error("RVL run past the image");
    for (let k = 0; k < count; k++) {
      const z = vle();
      prev += (z % 2) ? -(z + 1) / 2 : z / 2;
      out[i++] = prev;
    }
  }
  return out;
}

async function onFrame(buf) {
  const n = new DataView(buf).getUint32(0);
  const h = JSON.parse(decoder.decode(new Uint8Array(buf, 4, n)));
  const payload = new Uint8Array(buf, 4 + n);
  const key = `${h.device}/${h.stream}`;
  try {
    const s = view.streams[key] = view.streams[key] || newStream();
    const fig = document.querySelector(`.tile[data-key="${CSS.escape(key)}"]`);
    if (h.fmt === "jpeg") await drawJpeg(fig, h, payload);
    else if (h.fmt === "h264") await drawVideo(fig, h, payload, s);
    else if (h.fmt === "rvl") drawU16(fig, h, rvlDecode(payload, h.width * h.height), s);
    else if (h.fmt === "u16z") drawU16(fig, h, new Uint16Array(await inflate(payload)), s);
    else if (h.fmt === "bodies") drawBodyList(fig, h, JSON.parse(decoder.decode(payload)), s);
    else if (h.fmt === "cloud" && fig && window.rgbdcast3d) window.rgbdcast3d.update(fig, h, payload);
    account(s, h, buf.byteLength);
    if (h.fmt === "bodies") redrawOverlays(h.device);
    else if (h.stream === "color" || h.stream === "depth") drawOverlay(h.device, h.stream);
    if (fig) $(".stats", fig).textContent = statsText(key, s);
  } finally {
    send({ type: "ack", key });
  }
}

function account(s, h, nbytes) {
  const now = performance.now();
  s.frames++;
  s.bytes += nbytes;
  s.last = h;
  s.lastAt = now;
  s.times.push([now, nbytes]);
  while (s.times.length && now - s.times[0][0] > 2000) s.times.shift();
  s.latencies.push(Date.now() - h.t_host_ms);
  if (s.latencies.length > 30) s.latencies.shift();
  const span = s.times.length > 1 ? (now - s.times[0][0]) / 1000 : 0;
  s.fps = span > 0 ? (s.times.length - 1) / span : 0;
  s.mbps = span > 0 ? s.times.slice(1).reduce((a, t) => a + t[1], 0) * 8 / 1e6 / span : 0;
  const sorted = [...s.latencies].sort((a, b) => a - b);
  s.latencyMs = sorted[Math.floor(sorted.length / 2)];
}

function statsText(key, s) {
  const st = view.lastStats || {};
  const server = (st.streams || {})[key] || {};
  const mine = (st.viewer || {})[key] || {};
  const dropped = (server.dropped || 0);
  const skipped = (mine.skipped || 0);
  return `${s.fps.toFixed(1)} fps · ${s.latencyMs.toFixed(0)} ms · ${dropped} dropped · ${skipped} skipped here · ${s.mbps.toFixed(1)} Mbit/s`;
}

// Video color: decoded here (WebCodecs) when this browser can, else the server sends JPEG.
async function offerVideo() {
  view.video = "none";
  if (!("VideoDecoder" in window)) return;
  try {
    const ok = await VideoDecoder.isConfigSupported({ codec: "avc1.64001F", optimizeForLatency: true });
    if (ok.supported) { view.video = "h264"; send({ type: "video", codecs: ["h264"] }); }
  } catch (err) { view.errors.push(String(err)); }
}

function videoDecoder(s) {
  const dec = new VideoDecoder({
    output: (frame) => {
      const fig = s.vfig;
      if (fig && fig.isConnected) {
        sizeCanvases(fig, frame.displayWidth, frame.displayHeight);
        $("canvas.img", fig).getContext("2d").drawImage(frame, 0, 0);
      }
      s.videoFrames = (s.videoFrames || 0) + 1;
      s.videoShownSeq = s.vseqs.get(frame.timestamp);
      for (const t of s.vseqs.keys()) if (t <= frame.timestamp) s.vseqs.delete(t);
      frame.close();
    },
    error: (err) => { view.errors.push(String(err)); s.vdec = null; },
  });
  return dec;
}

async function drawVideo(fig, h, payload, s) {
  // Every unit arrives, in order (the server never skips one for us); a gap or a new decoder
  // shows nothing until a keyframe, so no picture is built on a missing one.
  s.vfig = fig;
  const broken = s.vdec && s.vnext !== undefined && h.au !== s.vnext;
  if (!s.vdec || s.vdec.state === "closed" || broken || (h.key && h.codec && h.codec !== s.vcodec)) {
    if (s.vdec && s.vdec.state !== "closed") s.vdec.close();
    s.vdec = null;
    if (!h.key) { s.videoSkipped = (s.videoSkipped || 0) + 1; return; }
    s.vdec = videoDecoder(s);
    s.vseqs = new Map();
    s.vdec.configure({ codec: h.codec || "avc1.64001F", optimizeForLatency: true });
    s.vcodec = h.codec;
  }
  s.vnext = h.au + 1;
  s.vseqs.set(h.au, h.seq);
  s.vdec.decode(new EncodedVideoChunk({ type: h.key ? "key" : "delta", timestamp: h.au, data: payload }));
  const dec = s.vdec;
  if (dec.decodeQueueSize > 2) {  // the ack waits while the decoder is behind (500 ms at most)
    await new Promise((resolve) => {
      dec.addEventListener("dequeue", resolve, { once: true });
      setTimeout(resolve, 500);
    });
  }
}

async function drawJpeg(fig, h, payload) {
  // Decode at the size shown (the browser scales while decoding): far less to draw than 1080p.
  const shown = fig ? Math.ceil($(".stack", fig).clientWidth * (window.devicePixelRatio || 1)) : 0;
  const opts = shown > 0 && shown < h.width ? { resizeWidth: shown, resizeHeight: Math.round(h.height * shown / h.width), resizeQuality: "medium" } : {};
  const bitmap = await createImageBitmap(new Blob([payload], { type: "image/jpeg" }), opts);
  if (fig) {
    const canvas = $("canvas.img", fig);
    sizeCanvases(fig, bitmap.width, bitmap.height);
    canvas.getContext("2d").drawImage(bitmap, 0, 0);
  }
  bitmap.close();
}

function sizeCanvases(fig, w, h) {
  for (const c of fig.querySelectorAll("canvas.img, canvas.overlay")) {
    if (c.width !== w || c.height !== h) { c.width = w; c.height = h; }
  }
}

function drawU16(fig, h, px, s) {
  s.pixels = px;
  let sum = 0;  // for tests: the page's pixels checked against the server's
  for (let i = 0; i < px.length; i++) sum += px[i];
  s.checksum = [h.seq, sum];
  s.width = h.width;
  s.height = h.height;
  if (!fig) return;
  sizeCanvases(fig, h.width, h.height);
  const canvas = $("canvas.img", fig);
  const ctx = canvas.getContext("2d");
  const img = ctx.createImageData(h.width, h.height);
  const out = img.data;
  if (h.stream === "depth") {
    const [lo, hi] = depthRange(px, s);
    const scale = 255 / Math.max(1, hi - lo);
    for (let i = 0, j = 0; i < px.length; i++, j += 4) {
      const v = px[i];
      if (v === 0) { out[j] = out[j + 1] = out[j + 2] = 0; } else {
        const t = Math.max(0, Math.min(255, (v - lo) * scale)) | 0;
        out[j] = TURBO[t * 3]; out[j + 1] = TURBO[t * 3 + 1]; out[j + 2] = TURBO[t * 3 + 2];
      }
      out[j + 3] = 255;
    }
    $(".legend .lo", fig).textContent = `${(lo / 1000).toFixed(2)} m`;
    $(".legend .hi", fig).textContent = `${(hi / 1000).toFixed(2)} m`;
  } else {
    const white = percentile(px, 0.99) || 1;
    for (let i = 0, j = 0; i < px.length; i++, j += 4) {
      const g = Math.sqrt(Math.min(1, px[i] / white)) * 255;
      out[j] = out[j + 1] = out[j + 2] = g;
      out[j + 3] = 255;
    }
  }
  ctx.putImageData(img, 0, 0);
}

function percentile(px, q, skipZero = false) {
  const sample = [];
  for (let i = 0; i < px.length; i += 37) if (!skipZero || px[i]) sample.push(px[i]);
  if (!sample.length) return 0;
  sample.sort((a, b) => a - b);
  return sample[Math.min(sample.length - 1, Math.floor(q * sample.length))];
}

function depthRange(px, s) {
  const lo = percentile(px, 0.02, true), hi = percentile(px, 0.98, true);
  if (!s.range) s.range = [lo, hi];
  else s.range = [s.range[0] * 0.8 + lo * 0.2, s.range[1] * 0.8 + hi * 0.2];  // steady legend
  return s.range;
}

function readout(key, stack, ev) {
  const s = view.streams[key];
  const fig = stack.closest(".tile");
  if (!s || !s.pixels) return;
  const rect = stack.getBoundingClientRect();
  const x = Math.floor((ev.clientX - rect.left) * s.width / rect.width);
  const y = Math.floor((ev.clientY - rect.top) * s.height / rect.height);
  if (x < 0 || y < 0 || x >= s.width || y >= s.height) return;
  const v = s.pixels[y * s.width + x];
  $(".readout", fig).textContent = v ? `${(v / 1000).toFixed(3)} m at (${x}, ${y})` : `no reading at (${x}, ${y})`;
}

function drawBodyList(fig, h, bodies, s) {
  s.bodies = bodies;
  s.bodiesAt = performance.now();
  // Images arrive later than the small body frames: keep a second of history so that an image
  // is drawn with the bodies of its own capture (same sequence number), not newer ones.
  s.history = s.history || [];
  s.history.push([h.seq, bodies]);
  if (s.history.length > 60) s.history.shift();
  if (!fig) return;
  $(".bodies-list", fig).textContent = bodies.length
    ? bodies.map((b, i) => `body ${i + 1}: id ${b.id}, ${b.joints.filter((j) => j[4] === 2).length} joints tracked`).join("\n")
    : "no bodies";
}

function redrawOverlays(device) {
  drawOverlay(device, "color");
  drawOverlay(device, "depth");
}

function drawOverlay(device, stream) {
  const fig = document.querySelector(`.tile[data-key="${CSS.escape(`${device}/${stream}`)}"]`);
  const canvas = fig && $("canvas.overlay", fig);
  if (!canvas) return;
  const ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  const b = view.streams[`${device}/body`];
  if (!b || !b.bodies || performance.now() - b.bodiesAt > 1000 || !view.hello) return;
  const off = stream === "color" ? 0 : 2;
  const native = (view.streams[`${device}/${stream}`] || {}).last;
  let bodies = b.bodies;
  if (native && b.history) {
    const match = b.history.find(([seq]) => seq === native.seq);
    if (match) bodies = match[1];
  }
  view.overlays = (view.overlays || 0) + 1;
  const k = native && native.width ? canvas.width / native.width : 1;  // image drawn scaled
  const scale = Math.max(1, canvas.width / 512);
  ctx.lineWidth = 3 * scale;
  bodies.forEach((body, i) => {
    ctx.strokeStyle = ctx.fillStyle = BODY_COLORS[i % BODY_COLORS.length];
    const pt = (j) => body.joints[j] && body.joints[j][off] !== null && body.joints[j][4] > 0 ? [body.joints[j][off] * k, body.joints[j][off + 1] * k] : null;
    ctx.beginPath();
    for (const [a, c] of view.hello.bones) {
      const p = pt(a), q = pt(c);
      if (p && q) { ctx.moveTo(p[0], p[1]); ctx.lineTo(q[0], q[1]); }
    }
    ctx.stroke();
    for (let j = 0; j < body.joints.length; j++) {
      const p = pt(j);
      if (p) { ctx.beginPath(); ctx.arc(p[0], p[1], 3 * scale, 0, 2 * Math.PI); ctx.fill(); }
    }
  });
}

setInterval(() => { for (const d of view.devices) updateDeviceState(d); }, 1000);
connect();
