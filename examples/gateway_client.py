#!/usr/bin/env python3
"""A plain-TCP gateway client using only the Python standard library (framed mode).

    python examples/gateway_client.py 127.0.0.1 2004 [DEVICE] [STREAM] [COUNT]

Lists the server's devices, then fetches COUNT raw frames of one stream and prints what it got.
Start the server with:  rgbdcast serve --tcp-gateway 2004
"""

import json
import socket
import struct
import sys
import time


def recv_exact(sock, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("server closed the connection")
        buf += chunk
    return bytes(buf)


def request(sock, line):
    """Send one framed command; return (header dict, payload bytes)."""
    sock.sendall(line.encode("ascii") + b"\n")
    (length,) = struct.unpack(">I", recv_exact(sock, 4))
    header = json.loads(recv_exact(sock, length))
    if "error" in header:
        raise RuntimeError(header["error"])
    payload = recv_exact(sock, header.get("size", 0))
    return header, payload


def main():
    host = sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1"
    port = int(sys.argv[2]) if len(sys.argv) > 2 else 2004
    with socket.create_connection((host, port), timeout=10) as sock:
        listing, _ = request(sock, "LIST")
        devices = listing["devices"]
        print("devices:", ", ".join(f"{d} ({', '.join(s)})" for d, s in devices.items()))
        device = sys.argv[3] if len(sys.argv) > 3 else next(iter(devices))
        stream = sys.argv[4] if len(sys.argv) > 4 else "depth"
        count = int(sys.argv[5]) if len(sys.argv) > 5 else 3
        for _ in range(count):
            header, payload = request(sock, f"GET {device} {stream} raw")
            age_ms = (time.time_ns() - header["t_host"]) / 1e6
            line = f"{stream} seq {header['seq']} shape {header['shape']} {header['dtype']}"
            if header["dtype"] == "<u2":  # little-endian uint16: print the centre pixel
                h, w = header["shape"][:2]
                (centre,) = struct.unpack_from("<H", payload, 2 * (h // 2 * w + w // 2))
                line += f" centre {centre} {header['units']}"
            print(f"{line}, {len(payload)} bytes, {age_ms:.1f} ms old")


if __name__ == "__main__":
    main()
