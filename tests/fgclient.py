"""A Foxglove WebSocket client written from the published protocol specification
(github.com/foxglove/ws-protocol, docs/spec.md, subprotocol ``foxglove.websocket.v1``; the SDK's
server since 0.2x accepts only its successor ``foxglove.sdk.v1``, whose messages used here are the
same, so both are offered, as the Foxglove app does): it reads
``serverInfo`` and ``advertise``, subscribes by channel id, and decodes ``messageData`` (opcode
1: subscription id u32, receive timestamp u64, payload) with the protobuf schema each channel
advertises (a base64 ``FileDescriptorSet``). Nothing of the Foxglove SDK is used here."""

from __future__ import annotations

import base64
import contextlib
import json
import struct
import time
from dataclasses import dataclass
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
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
        self._pool = descriptor_pool.DescriptorPool()

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

    def tally(self, seconds: float) -> dict[str, int]:
        """Messages received per topic in *seconds*, neither decoded nor kept."""
        counts: dict[str, int] = {}
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                raw = self.ws.recv(timeout=left)
            except TimeoutError:
                break
            if isinstance(raw, str):
                self._handle(raw)
                continue
            ch = self._subs.get(struct.unpack_from("<I", raw, 1)[0]) if raw[0] == 1 else None
            if ch is not None:
                counts[ch.topic] = counts.get(ch.topic, 0) + 1
        return counts

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
            fds = descriptor_pb2.FileDescriptorSet.FromString(base64.b64decode(ch.schema))
            for f in fds.file:
                with contextlib.suppress(TypeError, ValueError):  # added by another channel
                    self._pool.Add(f)
            cls = message_factory.GetMessageClass(self._pool.FindMessageTypeByName(ch.schema_name))
            self._classes[ch.schema_name] = cls
        msg = cls()
        msg.ParseFromString(data)
        return msg
