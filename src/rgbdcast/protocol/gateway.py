"""The plain-TCP gateway's command grammar (sans-I/O).

How this works: Camera2TCP clients send bare command strings with no delimiter (``RGB``,
``Connecting2KinectDepth``, ...), which may arrive split across TCP segments or several in one.
:class:`CommandParser` is fed bytes and yields :class:`Command` values: it takes the longest
known command at the front of its buffer, waits when the buffer is the start of a command,
and turns bytes that cannot start any command into one ``invalid`` command. A command that is
complete but also the start of a longer one (``RGB`` vs ``RGBHD``) waits for more bytes until
the I/O layer calls :meth:`CommandParser.flush` after a short quiet period. Newline-terminated
commands work too, and lines starting with ``LIST`` or ``GET`` are the framed mode for new
clients (``docs/protocol.md``).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "HANDSHAKES",
    "MAX_COMMAND",
    "REQUESTS",
    "Command",
    "CommandParser",
    "Service",
    "SERVICES",
]

MAX_COMMAND = 256
"""Bytes of an unfinished command kept before it is refused as too long."""


@dataclass(frozen=True, slots=True)
class Service:
    """A Camera2TCP service: which stream it serves and how it answers the handshake."""

    name: str
    stream: str  # "color", "depth" or "body"


SERVICES = {
    "SimpleImage": Service("SimpleImage", "color"),
    "RGBWebcam": Service("RGBWebcam", "color"),
    "KinectWebcam": Service("KinectWebcam", "color"),
    "KinectDepth": Service("KinectDepth", "depth"),
    "KinectSkeleton": Service("KinectSkeleton", "body"),
}
# The request names of Camera2TCP's README, each an alias of a service.
ALIASES = {"RGB": "RGBWebcam", "RGBHD": "KinectWebcam", "Depth": "KinectDepth"}

HANDSHAKES = {f"Connecting2{n}": n for n in SERVICES} | {
    f"Connecting2{a}": s for a, s in ALIASES.items()
}
REQUESTS = {n: n for n in SERVICES} | ALIASES
_TOKENS = sorted({*HANDSHAKES, *REQUESTS}, key=len, reverse=True)
_TOKEN_BYTES = [t.encode() for t in _TOKENS]
_FRAMED = ("LIST", "GET")
_SPACE = b" \t\r\n"


@dataclass(frozen=True, slots=True)
class Command:
    """One parsed command. ``kind``: handshake, request, list, get or invalid."""

    kind: str
    service: str = ""
    args: tuple[str, ...] = ()
    reason: str = ""


def _is_prefix_of_token(text: str) -> bool:
    return any(t.startswith(text) and t != text for t in _TOKENS)


class CommandParser:
    """Feed bytes, get commands. Bounded: never holds more than :data:`MAX_COMMAND` bytes."""

    def __init__(self, max_command: int = MAX_COMMAND) -> None:
        self._buf = b""
        self.max_command = max_command

    @property
    def pending(self) -> bool:
        """True when bytes wait for more (or for :meth:`flush` / :meth:`expire`)."""
        return bool(self._buf.strip(_SPACE))

    @property
    def ambiguous(self) -> bool:
        """True when the buffer is a complete command that may still grow (``RGB``)."""
        text = self._buf.strip(_SPACE).decode("ascii", "replace")
        return text in _TOKENS and _is_prefix_of_token(text)

    def feed(self, data: bytes) -> list[Command]:
        self._buf += data
        return self._parse(final=False)

    def flush(self) -> list[Command]:
        """After a short quiet period: take a complete command that waited for a longer one."""
        return self._parse(final=self.ambiguous)

    def expire(self) -> list[Command]:
        """After a long quiet period: take or refuse whatever is left."""
        return self._parse(final=True)

    def _parse(self, final: bool) -> list[Command]:
        out: list[Command] = []
        while True:
            self._buf = self._buf.lstrip(_SPACE)
            if not self._buf:
                return out
            cmd, used = self._one(final)
            if cmd is None:
                if len(self._buf) > self.max_command:
                    out.append(Command("invalid", reason="command too long"))
                    self._buf = b""
                return out
            out.append(cmd)
            self._buf = self._buf[used:]

    def _one(self, final: bool) -> tuple[Command | None, int]:
        buf = self._buf
        line_end = buf.find(b"\n")
        head = buf[: line_end if line_end >= 0 else len(buf)]
        text = head.decode("ascii", "replace").rstrip("\r")
        word = text.split(" ", 1)[0]
        if word in _FRAMED and (" " in text or line_end >= 0 or word == "LIST"):
            if line_end < 0 and not final:
                return None, 0  # a framed command ends with a newline
            parts = tuple(text.split())
            used = line_end + 1 if line_end >= 0 else len(buf)
            if parts[0] == "LIST" and len(parts) == 1:
                return Command("list"), used
            if parts[0] == "GET" and 3 <= len(parts) <= 4:
                return Command("get", args=parts[1:]), used
            return Command("invalid", reason="usage: LIST | GET <device> <stream> [codec]"), used
        for token in _TOKENS:
            tb = token.encode()
            if buf.startswith(tb):
                if len(buf) == len(tb) and _is_prefix_of_token(token) and not final:
                    return None, 0  # "RGB" may yet become "RGBHD"
                if token in HANDSHAKES:
                    return Command("handshake", service=HANDSHAKES[token]), len(tb)
                return Command("request", service=REQUESTS[token]), len(tb)
        if _is_prefix_of_token(text) and line_end < 0 and not final:
            return None, 0  # split across segments: wait for the rest
        # Garbage: everything up to the next place a command could start (or the line end)
        stop = len(buf) if line_end < 0 else line_end + 1
        for i in range(1, stop):
            rest = buf[i:stop]
            if any(rest.startswith(t) or (not final and t.startswith(rest)) for t in _TOKEN_BYTES):
                stop = i
                break
        return Command("invalid", reason="unknown command"), stop
