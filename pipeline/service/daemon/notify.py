"""sd_notify: the service-manager notification protocol, spoken directly.

Owns the datagram socket named by `$NOTIFY_SOCKET` (a path, or `@name` for the abstract
namespace) and the watchdog interval systemd announces in `$WATCHDOG_USEC` (for this
process only when `$WATCHDOG_PID` is unset or ours). What crosses the boundary:
`KEY=value` lines out, nothing in. Without `$NOTIFY_SOCKET` (a terminal, Docker, a test)
every call is a no-op, so the daemon code never asks whether it runs under systemd.

The protocol is one datagram per message; no library is needed for four messages, and
the libsystemd bindings would be a native dependency for the same `sendto`.
"""

from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger(__name__)


class SdNotifier:
    """Sends READY=1, WATCHDOG=1, STOPPING=1 and STATUS=... to the service manager."""

    def __init__(self, address: str | None, watchdog_usec: int | None = None):
        self.address = address
        self.watchdog_usec = watchdog_usec
        self._sock: socket.socket | None = None
        self._failed = False
        if address:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)

    @classmethod
    def from_environment(cls, environ: dict[str, str] | None = None) -> "SdNotifier":
        env = os.environ if environ is None else environ
        return cls(env.get("NOTIFY_SOCKET") or None, _watchdog_usec(env))

    @property
    def enabled(self) -> bool:
        return self._sock is not None

    @property
    def watchdog_interval_s(self) -> float | None:
        """How often to ping: half the announced timeout, as sd_watchdog_enabled(3) advises."""
        return self.watchdog_usec / 2e6 if self.watchdog_usec else None

    def ready(self, status: str = "") -> None:
        self.send("READY=1", *([f"STATUS={status}"] if status else []))

    def watchdog(self) -> None:
        self.send("WATCHDOG=1")

    def stopping(self, status: str = "") -> None:
        self.send("STOPPING=1", *([f"STATUS={status}"] if status else []))

    def status(self, text: str) -> None:
        self.send(f"STATUS={text}")

    def send(self, *lines: str) -> None:
        if self._sock is None:
            return
        target = "\0" + self.address[1:] if self.address.startswith("@") else self.address
        try:
            self._sock.sendto("\n".join(lines).encode("utf-8", "replace"), target)
        except OSError as exc:  # the manager went away: keep running, say so once
            if not self._failed:
                log.warning("cannot notify the service manager at %s: %s", self.address, exc)
            self._failed = True

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _watchdog_usec(env) -> int | None:
    pid, usec = env.get("WATCHDOG_PID"), env.get("WATCHDOG_USEC")
    if not usec or (pid and pid.isdigit() and int(pid) != os.getpid()):
        return None
    return int(usec) if usec.isdigit() and int(usec) > 0 else None
