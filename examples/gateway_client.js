#!/usr/bin/env node
// A plain-TCP gateway client for Node.js (no dependencies), framed mode.
//   node examples/gateway_client.js 127.0.0.1 2004 [DEVICE] [STREAM] [COUNT]
// Start the server with:  rgbdcast serve --tcp-gateway 2004
"use strict";
const net = require("net");

const [host = "127.0.0.1", port = "2004", deviceArg, stream = "depth", countArg = "3"] =
  process.argv.slice(2);
const sock = net.connect(Number(port), host);
let buffer = Buffer.alloc(0);
let waiting = null; // { need, resolve }

sock.on("data", (chunk) => {
  buffer = Buffer.concat([buffer, chunk]);
  pump();
});
sock.on("error", (err) => {
  console.error(`error: ${err.message}`);
  process.exit(1);
});

function pump() {
  if (waiting && buffer.length >= waiting.need) {
    const out = buffer.subarray(0, waiting.need);
    buffer = buffer.subarray(waiting.need);
    const { resolve } = waiting;
    waiting = null;
    resolve(out);
  }
}

function read(n) {
  return new Promise((resolve) => {
    waiting = { need: n, resolve };
    pump();
  });
}

async function request(line) {
  sock.write(line + "\n");
  const length = (await read(4)).readUInt32BE(0);
  const header = JSON.parse((await read(length)).toString("utf8"));
  if (header.error) throw new Error(header.error);
  const payload = await read(header.size || 0);
  return { header, payload };
}

(async () => {
  const { header: listing } = await request("LIST");
  const devices = Object.keys(listing.devices);
  console.log(`devices: ${devices.join(", ")}`);
  const device = deviceArg || devices[0];
  for (let i = 0; i < Number(countArg); i++) {
    const { header, payload } = await request(`GET ${device} ${stream} raw`);
    let line = `${stream} seq ${header.seq} shape ${JSON.stringify(header.shape)} ${header.dtype}`;
    if (header.dtype === "<u2") {
      const [h, w] = header.shape;
      line += ` centre ${payload.readUInt16LE(2 * (Math.floor(h / 2) * w + Math.floor(w / 2)))} ${header.units}`;
    }
    console.log(`${line}, ${payload.length} bytes`);
  }
  sock.end();
})().catch((err) => {
  console.error(`error: ${err.message}`);
  process.exit(1);
});
