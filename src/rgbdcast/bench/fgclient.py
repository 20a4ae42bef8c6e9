"""A Foxglove WebSocket client written from the published protocol specification
(github.com/foxglove/ws-protocol, docs/spec.md, subprotocol ``foxglove.websocket.v1``; the SDK's
server since 0.2x accepts only its successor ``foxglove.sdk.v1``, whose messages used here are the
same, so both are offered, as the Foxglove app does): it reads
``serverInfo`` and ``advertise``, subscribes by channel id, and decodes ``messageData`` (opcode
1: subscription id u32, receive timestamp u64, payload) with the protobuf schema each channel
advertises (a base64 ``FileDescriptorSet``; ``protobuf`` is imported only to decode). Nothing of
the Foxglove SDK is used here: the tests check the SDK's server with it, and ``rgbdcast bench
--suite foxglove`` measures with it."""

from __future__ import annotations

import base64
import contextlib
import json
import struct
import time
from dataclasses import dataclass
from typing import Any

from websockets.sync.client import connect

SUBPROTOCOLS = ["foxglove.sdk.v1", "foxglove.websocket.v1"]


@dataclass
class Channel:
    id: int
    topic: str
    encoding: str
    schema_name: str
    schema: str
    schema_encoding: str


@dataclass
class Message:
    topic: str
    schema_name: str
    received_ns: int
    log_time_ns: int
    data: bytes
    decoded: Any


class FoxgloveClient:
    """One connection to a Foxglove WebSocket server (*max_queue*: messages the library reads
    ahead before it stops reading the socket; 1 makes a client that stalls when not read)."""

    def __init__(self, url: str, *, max_queue: int | None = 64) -> None:
        self._stack = contextlib.ExitStack()
        self.ws = self._stack.enter_context(
            connect(url, subprotocols=SUBPROTOCOLS, max_queue=max_queue, max_size=None)  # type: ignore[arg-type]
        )
        assert self.ws.subprotocol in SUBPROTOCOLS
        self.server_info: dict[str, Any] = {}
        self.channels: dict[int, Channel] = {}
        self._subs: dict[int, Channel] = {}
        self._next_sub = 1
        self._classes: dict[str, Any] = {}
        self._pool: Any = None

    def close(self) -> None:
        self._stack.close()

    def __enter__(self) -> FoxgloveClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def wait_topics(self, topics: set[str], timeout: float = 10.0) -> dict[str, Channel]:
        """Read control messages until every topic in *topics* is advertised."""
        deadline = time.monotonic() + timeout
        while not topics <= self.topics():
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"not advertised: {sorted(topics - self.topics())}")
            self._handle(self.ws.recv(timeout=left))
        return {c.topic: c for c in self.channels.values() if c.topic in topics}

    def topics(self) -> set[str]:
        return {c.topic for c in self.channels.values()}

    def subscribe(self, topics: list[str]) -> None:
        by_topic = {c.topic: c for c in self.channels.values()}
        subs = []
        for topic in topics:
            ch = by_topic[topic]
            sub_id, self._next_sub = self._next_sub, self._next_sub + 1
            self._subs[sub_id] = ch
            subs.append({"id": sub_id, "channelId": ch.id})
        self.ws.send(json.dumps({"op": "subscribe", "subscriptions": subs}))

    def unsubscribe_all(self) -> None:
        ids, self._subs = list(self._subs), {}
        self.ws.send(json.dumps({"op": "unsubscribe", "subscriptionIds": ids}))

    def next_message(self, timeout: float = 10.0) -> Message:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no message")
            msg = self._handle(self.ws.recv(timeout=left))
            if msg is not None:
                return msg

    def collect(self, seconds: float) -> list[Message]:
        out: list[Message] = []
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                out.append(self.next_message(left))
            except TimeoutError:
                break
        return out

    def tally(self, seconds: float, most: int | None = None) -> dict[str, int]:
        """Messages received per topic in *seconds* (or until *most* came), neither decoded
        nor kept."""
        counts: dict[str, int] = {}
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0 and sum(counts.values()) != most:
            try:
                got = self.next_raw(left)
            except TimeoutError:
                break
            if got is not None:
                counts[got[0].topic] = counts.get(got[0].topic, 0) + 1
        return counts

    def next_raw(self, timeout: float) -> tuple[Channel, bytes] | None:
        """The next message as it came: a subscribed channel's ``messageData`` (its channel and
        the whole binary message), or None for anything else (control messages are handled)."""
        raw = self.ws.recv(timeout=timeout)
        if isinstance(raw, str):
            self._handle(raw)
            return None
        ch = self._subs.get(struct.unpack_from("<I", raw, 1)[0]) if raw[0] == 1 else None
        return (ch, raw) if ch is not None else None

    def _handle(self, raw: str | bytes) -> Message | None:
        if isinstance(raw, str):
            doc = json.loads(raw)
            op = doc.get("op")
            if op == "serverInfo":
                self.server_info = doc
            elif op == "advertise":
                for c in doc["channels"]:
                    self.channels[c["id"]] = Channel(
                        c["id"],
                        c["topic"],
                        c["encoding"],
                        c["schemaName"],
                        c["schema"],
                        c.get("schemaEncoding", ""),
                    )
            elif op == "unadvertise":
                for cid in doc["channelIds"]:
                    self.channels.pop(cid, None)
            return None
        if raw[0] != 1:  # messageData; time (2) and others are not used here
            return None
        sub_id, log_time = struct.unpack_from("<IQ", raw, 1)
        ch = self._subs.get(sub_id)
        if ch is None:  # a message in flight when we unsubscribed
            return None
        data = bytes(raw[13:])
        return Message(
            ch.topic, ch.schema_name, time.time_ns(), log_time, data, self.decode(ch, data)
        )

    def decode(self, ch: Channel, data: bytes) -> Any:
        assert ch.encoding == "protobuf" and ch.schema_encoding == "protobuf", ch
        cls = self._classes.get(ch.schema_name)
        if cls is None:
            from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

            self._pool = self._pool or descriptor_pool.DescriptorPool()
            fds = descriptor_pb2.FileDescriptorSet.FromString(base64.b64decode(ch.schema))
            for f in fds.file:
                with contextlib.suppress(TypeError, ValueError):  # added by another channel
                    self._pool.Add(f)
            cls = message_factory.GetMessageClass(self._pool.FindMessageTypeByName(ch.schema_name))
            self._classes[ch.schema_name] = cls
        msg = cls()
        msg.ParseFromString(data)
        return msg


def _bench_main(argv: list[str]) -> int:
    """One bench process: subscribe to every topic of the Foxglove server at URL and count what
    arrives per topic over --duration after --warmup; with --endpoint, also check that each
    color image is byte for byte the JPEG the rgbdcast server sent (matched by capture time).
    With --stall, subscribe and never read again. Prints one JSON line."""
    import argparse
    import json as _json

    p = argparse.ArgumentParser(prog="python -m rgbdcast.bench.fgclient")
    p.add_argument("url")
    p.add_argument("--endpoint", help="the rgbdcast server, to compare color bytes")
    p.add_argument("--topics", type=int, default=9, help="wait for this many topics")
    p.add_argument("--stall", action="store_true")
    p.add_argument("--warmup", type=float, default=2.0)
    p.add_argument("--duration", type=float, default=10.0)
    args = p.parse_args(argv)
    deadline = time.monotonic() + 30.0
    while True:  # the server may still be starting
        try:
            client = FoxgloveClient(args.url, max_queue=1 if args.stall else 64)
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    with client:
        while len(client.topics()) < args.topics and time.monotonic() < deadline:
            with contextlib.suppress(TimeoutError):
                client._handle(client.ws.recv(timeout=1.0))
        topics = sorted(client.topics())
        client.subscribe(topics)
        if args.stall:
            time.sleep(args.warmup + args.duration)
            print(_json.dumps({"stalled": True, "topics": topics}), flush=True)
            return 0
        counts, equal, compared = _count(client, args)
    fps = {t: n / args.duration for t, n in sorted(counts.items())}
    out = {"fps": fps, "color_compared": compared, "color_equal": equal}
    print(_json.dumps(out), flush=True)
    return 0


def _count(client: FoxgloveClient, args: Any) -> tuple[dict[str, int], int, int]:
    got: dict[int, bytes] = {}
    sub = None
    if args.endpoint:
        from ..client import Client

        zc = client._stack.enter_context(Client(args.endpoint))
        device = next(iter(zc.devices))
        sub = zc.subscribe(device, "color", decode=False, queue_size=2000)
    counts: dict[str, int] = {}
    equal = compared = 0
    start = time.monotonic() + args.warmup
    end = start + args.duration
    while (now := time.monotonic()) < end:
        try:
            message = client.next_raw(end - now)
        except TimeoutError:
            break
        if message is None or now < start:
            continue
        ch, raw = message
        counts[ch.topic] = counts.get(ch.topic, 0) + 1
        if sub is not None and ch.topic.endswith("/color") and len(got) < 300:
            got[struct.unpack_from("<Q", raw, 5)[0]] = client.decode(ch, bytes(raw[13:])).data
    last = max(got, default=0)
    until = time.monotonic() + 5.0
    while sub is not None and got and time.monotonic() < until:  # what ZeroMQ carried meanwhile
        try:
            f = sub.get(timeout=0.5)
        except TimeoutError:
            break
        t = f.header.host_time_ns
        if t in got:
            compared += 1
            equal += got.pop(t) == bytes(f.payload)
        if t >= last:
            break
    return counts, equal, compared


if __name__ == "__main__":
    import sys

    sys.exit(_bench_main(sys.argv[1:]))
