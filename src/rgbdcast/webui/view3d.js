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
  const v = { renderer, scene, camera, controls, geometry, bones, frames: 0, drawn: 0, moved: 0 };
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
  v.frames++;
  v.points = n;
  v.segments = lines.length / 6;
  render(v);
}

// what app.js and the tests use
window.rgbdcast3d = { update, views, version: THREE.REVISION };
