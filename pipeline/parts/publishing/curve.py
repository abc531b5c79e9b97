"""ZeroMQ CURVE for the verdict publisher: key files, permission checks, the ZAP handler.

Owns reading ZeroMQ certificate files (the `public-key = "..."` / `secret-key = "..."`
text format that `zmq.auth` and `pipeline curve-keys` write), refusing a secret key file
that group or others can read, and starting the ZAP authenticator
(`zmq.auth.thread.ThreadAuthenticator`) that admits exactly the listed client public keys.

What crosses the boundary: `CurveConfig` paths come in; z85 key bytes and a started
authenticator go out (the caller owns it and must `stop()` it after closing the socket).
Key material never reaches a log line or an exception message: messages name the file,
never its content, and the authenticator's own debug lines (which print client keys)
go through a filter that redacts them.
"""

from __future__ import annotations

import logging
import os
import re
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path

import zmq
from zmq.auth.thread import ThreadAuthenticator

from pipeline.config.models import CurveConfig
from pipeline.core.errors import PipelineError

log = logging.getLogger(__name__)

_KEY_LINE = re.compile(rb'^\s*(public|secret)-key\s*=\s*"?([0-9A-Za-z.\-:+=^!/*?&<>()\[\]{}@%$#]{40})"?\s*$')
_Z85_KEY = re.compile(r"[0-9A-Za-z.\-:+=^!/*?&<>()\[\]{}@%$#]{40}")


DENIED_LOG_EVERY_S = 10.0


class CurveKeyError(PipelineError, ValueError):
    """A key file is missing, malformed or too widely readable; the message names the file."""


@dataclass(frozen=True)
class ServerKeys:
    public: bytes  # z85, 40 bytes
    secret: bytes = field(repr=False)  # z85, 40 bytes; never in a repr, log or message


def read_key_file(path: Path) -> tuple[bytes | None, bytes | None]:
    """(public, secret) z85 keys from a certificate file; either may be None."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise CurveKeyError(f"cannot read key file {path}: {exc.strerror or exc}") from None
    keys: dict[bytes, bytes] = {}
    for line in data.splitlines():
        match = _KEY_LINE.match(line)
        if match:
            keys[match.group(1)] = match.group(2)
    return keys.get(b"public"), keys.get(b"secret")


def check_private(path: Path) -> None:
    """Refuse a secret key file that anyone but its owner can read or write."""
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        raise CurveKeyError(f"cannot read secret key file {path}: {exc.strerror or exc}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise CurveKeyError(
            f"secret key file {path} is accessible by group or others (mode {stat.S_IMODE(mode):04o}); "
            f"refusing to use it: run `chmod 600 {path}`")


def load_server_keys(cfg: CurveConfig) -> ServerKeys:
    check_private(cfg.server_secret_key_file)
    public, secret = read_key_file(cfg.server_secret_key_file)
    if secret is None or public is None:
        raise CurveKeyError(f"{cfg.server_secret_key_file} holds no public-key/secret-key pair "
                            "(expected a ZeroMQ certificate as written by `pipeline curve-keys`)")
    if cfg.server_public_key_file is not None:
        declared, _ = read_key_file(cfg.server_public_key_file)
        if declared != public:
            raise CurveKeyError(f"{cfg.server_public_key_file} does not hold the public key that "
                                f"belongs to {cfg.server_secret_key_file}")
    return ServerKeys(public, secret)


def load_allowed_clients(paths: tuple[Path, ...]) -> frozenset[bytes]:
    """Public keys from the listed files and from every `*.key` file in listed directories."""
    files: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            found = sorted(path.glob("*.key"))
            if not found:
                raise CurveKeyError(f"allowed_clients directory {path} contains no *.key files")
            files += found
        else:
            files.append(path)
    keys = set()
    for file in files:
        public, _ = read_key_file(file)
        if public is None:
            raise CurveKeyError(f"allowed client key file {file} holds no public-key")
        keys.add(public)
    return frozenset(keys)


class _AllowList:
    """The ZAP credentials provider: a client is admitted when its public key is listed.
    Refusals are counted and logged at most once per DENIED_LOG_EVERY_S, so a peer retrying
    a wrong key (or a scan) cannot flood the journal."""

    def __init__(self, keys: frozenset[bytes]):
        self._keys = keys
        self.denied = 0
        self._next_log = 0.0

    def callback(self, domain: str, client_key: bytes) -> bool:
        if client_key in self._keys:
            return True
        self.denied += 1
        now = time.monotonic()
        if now >= self._next_log:
            self._next_log = now + DENIED_LOG_EVERY_S
            log.warning("CURVE: refused a client whose public key is not in publisher.curve.allowed_clients "
                        "(%d refused so far; at most one line per %.0f s)", self.denied, DENIED_LOG_EVERY_S)
        return False


class RedactKeys(logging.Filter):
    """Replaces anything shaped like a z85 CURVE key in a record with `<key>`."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = _Z85_KEY.sub("<key>", message)
        if redacted != message:
            record.msg, record.args = redacted, ()
        return True


def start_authenticator(context: zmq.Context, allowed: frozenset[bytes]) -> ThreadAuthenticator:
    """A running ZAP handler on `context` admitting exactly `allowed`; caller stops it."""
    zap_log = logging.getLogger(f"{__name__}.zap")
    if not any(isinstance(f, RedactKeys) for f in zap_log.filters):
        zap_log.addFilter(RedactKeys())
    auth = ThreadAuthenticator(context, log=zap_log)
    auth.start()
    allow_list = _AllowList(allowed)
    auth.configure_curve_callback(domain="*", credentials_provider=allow_list)
    auth.allow_list = allow_list  # type: ignore[attr-defined]  # its `denied` count, for the heartbeat and tests
    return auth


def make_curve_server(socket: zmq.Socket, keys: ServerKeys) -> None:
    """Turn `socket` into a CURVE server; must happen before bind."""
    socket.curve_secretkey = keys.secret
    socket.curve_publickey = keys.public
    socket.curve_server = True
    socket.zap_domain = b"*"


def make_curve_client(socket: zmq.Socket, server_key_file: Path, client_key_file: Path) -> None:
    """Turn `socket` into a CURVE client of the server whose public key is in `server_key_file`."""
    server_public, _ = read_key_file(server_key_file)
    if server_public is None:
        raise CurveKeyError(f"server key file {server_key_file} holds no public-key")
    check_private(client_key_file)
    public, secret = read_key_file(client_key_file)
    if public is None or secret is None:
        raise CurveKeyError(f"client key file {client_key_file} holds no public-key/secret-key pair")
    socket.curve_serverkey = server_public
    socket.curve_publickey = public
    socket.curve_secretkey = secret


def write_key_pair(directory: Path, name: str) -> tuple[Path, Path]:
    """`name.key` (public, shareable) and `name.key_secret` (mode 0600) in `directory`."""
    public, secret = zmq.curve_keypair()
    directory.mkdir(parents=True, exist_ok=True)
    public_file, secret_file = directory / f"{name}.key", directory / f"{name}.key_secret"
    header = f"#   ZeroMQ CURVE certificate '{name}' written by `pipeline curve-keys`\n"
    _write_private(secret_file, header + _cert_body(public, secret))
    public_file.write_text(header + "#   public key only: give this file to the other side\n" + _cert_body(public))
    return public_file, secret_file


def _cert_body(public: bytes, secret: bytes | None = None) -> str:
    body = f'metadata\ncurve\n    public-key = "{public.decode()}"\n'
    return body + (f'    secret-key = "{secret.decode()}"\n' if secret else "")


def _write_private(path: Path, text: str) -> None:
    # Created 0600 from the start (no window in which the umask's 0644 applies).
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(text)
