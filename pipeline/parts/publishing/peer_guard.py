"""Bounds what each TCP peer of the verdict publisher may cost, and how many there are.

Owns the PUB socket's monitor (EVENT_ACCEPTED/DISCONNECTED/CLOSED, which carry the
connection's file descriptor) and two rules, applied by dropping the connection
(shutdown of its TCP socket: libzmq then ends the peer's pipe and frees everything the
peer made it hold, its subscriptions included):
- at most `max_peers` connections: one accepted beyond that is dropped at once and
  counted in `refused`;
- a peer may send at most `burst_bytes` plus `rate_bytes_s` per second connected (the
  kernel's own count, TCP_INFO bytes_received). A gateway sends a handshake, a few
  subscriptions and keep-alive pings: far below; a peer flooding subscriptions passes it
  within a few hundred of them and is dropped, counted in `dropped`.
Why here and not in libzmq: libzmq 4.3.5 records every subscription a peer sends (even
on a manual XPUB) until that peer disconnects, and has no per-peer limit.
Not thread-safe: the publisher's thread owns it. ipc:// peers are counted, not metered.
What crosses the boundary: monitor events in; shutdown(2) on offending connections out.
"""

from __future__ import annotations

import logging
import os
import socket
import struct
import time
from dataclasses import dataclass

import zmq
from zmq.utils.monitor import recv_monitor_message

log = logging.getLogger(__name__)

_TCPI_BYTES_RECEIVED = 128  # offset of the u64 tcpi_bytes_received in struct tcp_info (Linux >= 4.1)
CHECK_EVERY_S = 0.2  # metering costs a few syscalls per peer: often enough for a gateway
URGENT_EVERY_S = 0.005  # while a peer sends what no gateway sends: check almost at once
LOG_EVERY_S = 10.0  # at most one line per this, whatever the flood


@dataclass
class _Peer:
    address: object  # getpeername at accept (None if unknown): a reused descriptor never matches
    since: float


class PeerGuard:
    def __init__(self, sock: zmq.Socket, max_peers: int, burst_bytes: int, rate_bytes_s: int):
        self._monitor = sock.get_monitor_socket(zmq.EVENT_ACCEPTED | zmq.EVENT_DISCONNECTED | zmq.EVENT_CLOSED)
        self._socket = sock
        self.max_peers, self.burst_bytes, self.rate_bytes_s = max_peers, burst_bytes, rate_bytes_s
        self._peers: dict[int, _Peer] = {}
        self.refused = self.dropped = 0
        self._next_check = self._next_log = 0.0

    @property
    def peers(self) -> int:
        return len(self._peers)

    def tick(self, urgent: bool = False) -> None:
        """Read monitor events and meter the peers; at most every CHECK_EVERY_S unless urgent."""
        now = time.monotonic()
        if now < self._next_check - (CHECK_EVERY_S - URGENT_EVERY_S if urgent else 0):
            return
        self._next_check = now + CHECK_EVERY_S
        self._read_events(now)
        for fd, peer in list(self._peers.items()):
            received = _bytes_received(fd, peer.address)
            if received is not None and received > self.burst_bytes + self.rate_bytes_s * (now - peer.since):
                self._drop(fd, peer, f"sent {received} bytes in {now - peer.since:.1f} s")
                self.dropped += 1

    def close(self) -> None:
        self._socket.disable_monitor()
        self._monitor.close(linger=0)

    def _read_events(self, now: float) -> None:
        while True:
            try:
                event = recv_monitor_message(self._monitor, zmq.NOBLOCK)
            except zmq.Again:
                return
            fd = int(event["value"])
            if event["event"] == zmq.EVENT_ACCEPTED:
                peer = _Peer(_peername(fd), now)
                if len(self._peers) >= self.max_peers:
                    self._drop(fd, peer, f"more than publisher.max_gateways ({self.max_peers}) connected")
                    self.refused += 1
                else:
                    self._peers[fd] = peer
            else:
                self._peers.pop(fd, None)

    def _drop(self, fd: int, peer: _Peer, why: str) -> None:
        self._peers.pop(fd, None)
        _shutdown(fd, peer.address)
        now = time.monotonic()
        if now >= self._next_log:
            self._next_log = now + LOG_EVERY_S
            log.warning("publisher: dropped peer %s: %s (%d refused, %d dropped so far; one line per %.0f s)",
                        peer.address, why, self.refused, self.dropped + 1, LOG_EVERY_S)


def _dup(fd: int) -> socket.socket | None:
    try:
        return socket.socket(fileno=os.dup(fd))
    except OSError:
        return None


def _peername(fd: int) -> object:
    sock = _dup(fd)
    if sock is None:
        return None
    with sock:
        try:
            return sock.getpeername()
        except OSError:
            return None


def _same_peer(sock: socket.socket, address: object) -> bool:
    try:
        return address is not None and sock.getpeername() == address
    except OSError:
        return False


def _bytes_received(fd: int, address: object) -> int | None:
    sock = _dup(fd)
    if sock is None:
        return None
    with sock:
        if sock.family not in (socket.AF_INET, socket.AF_INET6) or not _same_peer(sock, address):
            return None
        try:
            info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 256)
        except OSError:
            return None
        return struct.unpack_from("=Q", info, _TCPI_BYTES_RECEIVED)[0] if len(info) >= 136 else None


def _shutdown(fd: int, address: object) -> None:
    sock = _dup(fd)
    if sock is None:
        return
    with sock:
        if _same_peer(sock, address):
            try:
                sock.shutdown(socket.SHUT_RDWR)  # libzmq sees the connection end and frees the peer's pipe
            except OSError:
                pass
