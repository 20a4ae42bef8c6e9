"""CurveZMQ for every ZeroMQ endpoint: key pairs, the authorised-keys folder, socket options.

How this works: ``rgbdcast keygen --out DIR`` writes a server and a client key pair (ZeroMQ's
certificate files) and puts the client's public key in ``DIR/authorized``. A secure server sets
``curve_server`` on its control and data sockets and runs ZeroMQ's ZAP authenticator on its
context; each connection attempt asks :class:`KeyFolder`, which accepts a client key only if
some file in the authorised folder holds it. The folder is read again whenever it changes, so
keys can be added or removed while the server runs. Rejections are counted and logged at most
once every few seconds. Clients set the server's public key and their own pair; traffic is then
encrypted and authenticated both ways (CURVE).
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

from ..errors import UsageError

__all__ = [
    "ZAP_DOMAIN",
    "ClientKeys",
    "KeyFolder",
    "ServerKeys",
    "ZapGuard",
    "fingerprint",
    "keygen",
    "secure_client",
    "secure_server",
]

log = logging.getLogger(__name__)

ZAP_DOMAIN = "rgbdcast"
LOG_EVERY_S = 10.0
"""Rejected attempts are logged at most this often (with the count since the last line)."""


def fingerprint(public: bytes) -> str:
    """A short, printable fingerprint of a public key (SHA-256 of its Z85 text, 16 hex)."""
    return hashlib.sha256(public).hexdigest()[:16]


def _load(path: Path, secret: bool) -> tuple[bytes, bytes | None]:
    try:
        public, secret_key = zmq.auth.load_certificate(str(path))
    except (OSError, ValueError) as exc:
        raise UsageError(
            f"cannot read the key {path}: {exc} (make keys with: rgbdcast keygen --out DIR)"
        ) from exc
    if secret and secret_key is None:
        raise UsageError(f"{path} holds no secret key")
    return public, secret_key


@dataclass(frozen=True)
class ServerKeys:
    """The server's key pair and the folder of authorised client public keys."""

    public: bytes
    secret: bytes
    authorized: Path

    @classmethod
    def from_dir(cls, folder: str | Path) -> ServerKeys:
        """``DIR/server.key_secret`` and ``DIR/authorized`` (as ``rgbdcast keygen`` makes)."""
        d = Path(folder)
        public, secret = _load(d / "server.key_secret", secret=True)
        assert secret is not None
        if not (d / "authorized").is_dir():
            raise UsageError(f"{d / 'authorized'} is missing: it holds the clients' public keys")
        return cls(public, secret, d / "authorized")

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.public)


@dataclass(frozen=True)
class ClientKeys:
    """What a client needs: the server's public key and its own key pair."""

    server_public: bytes
    public: bytes
    secret: bytes

    @classmethod
    def from_dir(cls, folder: str | Path, name: str = "client") -> ClientKeys:
        """``DIR/server.key`` and ``DIR/<name>.key_secret``."""
        d = Path(folder)
        server_public, _ = _load(d / "server.key", secret=False)
        public, secret = _load(d / f"{name}.key_secret", secret=True)
        assert secret is not None
        return cls(server_public, public, secret)


def keygen(out: str | Path, clients: tuple[str, ...] = ("client",)) -> dict[str, Path]:
    """Make a server key pair and client key pairs under *out*; authorise the clients."""
    d = Path(out)
    authorized = d / "authorized"
    authorized.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name in ("server", *clients):
        if (d / f"{name}.key_secret").exists():
            raise UsageError(f"{d / (name + '.key_secret')} exists; choose another --out")
        public_file, secret_file = zmq.auth.create_certificates(str(d), name)
        os.chmod(secret_file, 0o600)
        paths[name] = Path(secret_file)
        if name != "server":
            shutil.copy(public_file, authorized / f"{name}.key")
    return paths


class KeyFolder:
    """A ZAP credentials provider: accepts the keys found in a folder, counts the others."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.accepted = 0
        self.rejected = 0
        self._keys: frozenset[bytes] = frozenset()
        self._seen: tuple[Any, ...] | None = None
        self._lock = threading.Lock()
        self._logged_at = 0.0
        self._unlogged = 0
        self.reload()

    def _signature(self) -> tuple[Any, ...]:
        try:
            return tuple(
                sorted(
                    (e.name, e.stat().st_mtime_ns, e.stat().st_size)
                    for e in os.scandir(self.folder)
                )
            )
        except OSError:
            return ()

    def reload(self) -> None:
        """Read the folder again (done by itself whenever its files change)."""
        keys = set()
        for path in sorted(self.folder.glob("*")):
            if path.is_file():
                try:
                    public, _ = zmq.auth.load_certificate(str(path))
                except (OSError, ValueError):
                    log.warning("ignoring %s: not a ZeroMQ public key file", path)
                    continue
                keys.add(public)
        self._keys = frozenset(keys)
        self._seen = self._signature()

    def callback(self, domain: str, key: bytes) -> bool:
        """Called by the authenticator for every connection attempt."""
        with self._lock:
            if self._signature() != self._seen:
                self.reload()
            ok = key in self._keys
            if ok:
                self.accepted += 1
                return True
            self.rejected += 1
            self._unlogged += 1
            now = time.monotonic()
            if now - self._logged_at >= LOG_EVERY_S:
                log.warning(
                    "refused %d connection attempt(s) with unknown keys (last: %s)",
                    self._unlogged,
                    key.decode(errors="replace"),
                )
                self._logged_at, self._unlogged = now, 0
            return False


class ZapGuard:
    """ZeroMQ's ZAP authenticator on a context, answering CURVE through a :class:`KeyFolder`."""

    def __init__(self, ctx: zmq.Context[Any], keys: ServerKeys) -> None:
        self.folder = KeyFolder(keys.authorized)
        self._auth = ThreadAuthenticator(ctx, log=logging.getLogger(__name__ + ".zap"))
        self._auth.start()
        self._auth.configure_curve_callback(ZAP_DOMAIN, credentials_provider=self.folder)

    def stop(self) -> None:
        self._auth.stop()


def secure_server(sock: zmq.Socket[Any], keys: ServerKeys | None) -> None:
    """Make *sock* (before it binds) a CURVE server checked by the ZAP authenticator."""
    if keys is None:
        return
    sock.setsockopt(zmq.CURVE_SERVER, 1)
    sock.setsockopt(zmq.CURVE_SECRETKEY, keys.secret)
    sock.setsockopt(zmq.CURVE_PUBLICKEY, keys.public)
    sock.setsockopt(zmq.ZAP_DOMAIN, ZAP_DOMAIN.encode())


def secure_client(sock: zmq.Socket[Any], keys: ClientKeys | None) -> None:
    """Make *sock* (before it connects) a CURVE client of the server whose key is given."""
    if keys is None:
        return
    sock.setsockopt(zmq.CURVE_SERVERKEY, keys.server_public)
    sock.setsockopt(zmq.CURVE_PUBLICKEY, keys.public)
    sock.setsockopt(zmq.CURVE_SECRETKEY, keys.secret)
