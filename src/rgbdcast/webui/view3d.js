// The 3-D view of a device: its colored point cloud and skeletons, orbit and zoom.
// three.js 0.187.0 is vendored in vendor/three (its README says which files, its LICENSE is MIT).
// app.js calls window.rgbdcast3d.update(fig, header, payload) with each "cloud" frame:
// payload = int16 x y z in millimetres (optical axes: x right, y down, z forward), then RGB.
import * as THREE from "three";
import { OrbitControls } from "./vendor/three/OrbitControls.js";

const BODY_COLORS = [0xff595e, 0xffca3a, 0x8ac926, 0x1982c4, 0x6a4c93, 0xff924c];
const views = new Map();

function create(fig) {
  const holder = fig.querySelector(".three");
  const width = holder.clientWidth || 480, height = Math.round(width * 0.75);
  const renderer = new THREE.WebGLRenderer({ antialias: false, preserveDrawingBuffer: true });
  renderer.setPixelRatio(window.devicePixelRatio || 1);
  renderer.setSize(width, height);
  holder.append(renderer.domElement);
  const scene = new THREE.Scene();
  scene.background = new THREE.Color(0x0b0d10);
  const camera = new THREE.PerspectiveCamera(60, width / height, 0.05, 50);
  // the camera's optical axes to three.js's (y up, looking down -z): turn half a turn about x
  const world = new THREE.Group();
  world.rotation.x = Math.PI;
  scene.add(world);
  const geometry = new THREE.BufferGeometry();
  const material = new THREE.PointsMaterial({ size: 2, sizeAttenuation: false, vertexColors: true });
  const points = new THREE.Points(geometry, material);
  points.frustumCulled = false;
  world.add(points);
  // the skeleton is drawn over the points (the body's own points would hide it)
  const bones = new THREE.LineSegments(new THREE.BufferGeometry(),
    new THREE.LineBasicMaterial({ vertexColors: true, depthTest: false }));
  bones.frustumCulled = false;
  bones.renderOrder = 1;
  world.add(bones);
  world.add(new THREE.AxesHelper(0.3));  // the depth camera: x red, y green (down), z blue
  camera.position.set(1.6, 1.2, 0.8);  // a little above, to the side and behind the sensor
  const controls = new OrbitControls(camera, renderer.domElement);
  controls.target.set(0, -0.3, -2.6);
  controls.update();
  const v = { renderer, scene, camera, controls, geometry, bones, world, frames: 0, drawn: 0, moved: 0 };
  controls.addEventListener("change", () => { v.moved++; render(v); });
  views.set(fig, v);
  return v;
}

function render(v) {
  v.renderer.render(v.scene, v.camera);
  v.drawn++;
}

function update(fig, h, payload) {
  const v = views.get(fig) || create(fig);
  const n = h.n;
  const xyz = new Int16Array(payload.slice(0, n * 6).buffer);
  const rgb = payload.subarray(n * 6, n * 9);
  const pos = new Float32Array(n * 3);
  const col = new Float32Array(n * 3);
  for (let i = 0; i < n * 3; i++) { pos[i] = xyz[i] * 0.001; col[i] = rgb[i] / 255; }
  v.geometry.setAttribute("position", new THREE.BufferAttribute(pos, 3));
  v.geometry.setAttribute("color", new THREE.BufferAttribute(col, 3));
  const hello = window.rgbdcast.hello;
  const lines = [], colors = [];
  (h.bodies || []).forEach((joints, b) => {
    const c = new THREE.Color(BODY_COLORS[b % BODY_COLORS.length]);
    for (const [a, z] of (hello ? hello.bones : [])) {
      const p = joints[a], q = joints[z];
      if (!p || !q || p[0] === null || q[0] === null || p[3] === 0 || q[3] === 0) continue;
      lines.push(p[0], p[1], p[2], q[0], q[1], q[2]);
      colors.push(c.r, c.g, c.b, c.r, c.g, c.b);
    }
  });
  v.bones.geometry.setAttribute("position", new THREE.Float32BufferAttribute(lines, 3));
  v.bones.geometry.setAttribute("color", new THREE.Float32BufferAttribute(colors, 3));
  if (h.cameras) drawRig(v, fig, h);
  v.frames++;
  v.points = n;
  v.segments = lines.length / 6;
  render(v);
}

// a rig (rgbdcast view --rig): each camera's frustum where the rig file puts it, and how far
// its capture was from the rig frameset's time
const CAMERA_COLORS = [0x4cc9f0, 0xf72585, 0xb5e48c, 0xffd166, 0xc77dff, 0xff8c42];

function drawRig(v, fig, h) {
  if (!v.frusta) {
    v.frusta = new THREE.LineSegments(new THREE.BufferGeometry(),
      new THREE.LineBasicMaterial({ vertexColors: true }));
    v.frusta.frustumCulled = false;
    v.world.add(v.frusta);
    v.legend = document.createElement("div");
    v.legend.className = "rigcams";
    fig.querySelector(".stack").after(v.legend);
  }
  const pos = [], col = [];
  v.legend.replaceChildren();
  h.cameras.forEach((cam, i) => {
    const c = new THREE.Color(cam.present ? CAMERA_COLORS[i % CAMERA_COLORS.length] : 0x666666);
    const m = new THREE.Matrix4().set(...cam.pose);  // row-major, as in the rig file
    const [w, hh, fx, fy, cx, cy] = cam.intr || [512, 424, 365, 365, 256, 212];
    const z = 0.3;
    const corner = (u, q) => new THREE.Vector3((u - cx) / fx * z, (q - cy) / fy * z, z).applyMatrix4(m);
    const apex = new THREE.Vector3(0, 0, 0).applyMatrix4(m);
    const k = [corner(0, 0), corner(w, 0), corner(w, hh), corner(0, hh)];
    for (let j = 0; j < 4; j++) {
      for (const [a, b] of [[apex, k[j]], [k[j], k[(j + 1) % 4]]]) {
        pos.push(a.x, a.y, a.z, b.x, b.y, b.z);
        col.push(c.r, c.g, c.b, c.r, c.g, c.b);
      }
    }
    const skew = cam.skew_ms === null ? "absent" : `${cam.skew_ms >= 0 ? "+" : ""}${cam.skew_ms.toFixed(1)} ms`;
    const swatch = document.createElement("span");
    swatch.style.color = `#${c.getHexString()}`;
    swatch.textContent = "■ ";
    const item = document.createElement("span");
    item.className = "rigcam";
    item.append(swatch, `${cam.name} ${skew}`);  // text: a device id is never markup
    v.legend.append(item, " · ");
  });
  v.frusta.geometry.setAttribute("position", new THREE.Float32BufferAttribute(pos, 3));
  v.frusta.geometry.setAttribute("color", new THREE.Float32BufferAttribute(col, 3));
  v.cameras = h.cameras.length;
  v.legend.append(`skew ${h.skew_ms.toFixed(1)} ms`);
}

// what app.js and the tests use
window.rgbdcast3d = { update, views, version: THREE.REVISION };
