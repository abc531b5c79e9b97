"""Bounds what each TCP peer of the verdict publisher may cost, and how many there are.

Owns a thread, `publisher-peer-guard`, with the PUB socket's monitor (EVENT_ACCEPTED /
DISCONNECTED / CLOSED, which carry the connection's file descriptor) and a duplicate of
each peer's TCP socket, and two rules, applied by dropping the connection (shutdown of
its TCP socket: libzmq then ends the peer's pipe and frees everything the peer made it
hold, its subscriptions included):
- at most `max_peers` connections: one accepted beyond that is dropped at once and
  counted in `refused`;
- a peer may send at most `burst_bytes` plus `rate_bytes_s` per second connected (the
  kernel's own count, TCP_INFO bytes_received). A gateway sends a handshake, a few
  subscriptions and keep-alive pings: far below; a peer flooding subscriptions passes it
  within a few dozen of them and is dropped, counted in `dropped`.

Why a thread of its own, and why here rather than in libzmq: libzmq 4.3.5 records every
subscription a peer sends (even on a manual XPUB) in a trie, about 45 bytes per topic
byte, until that peer disconnects, and has no per-peer limit. It does so inside whatever
call the publish thread makes on the socket, and it keeps reading for as long as the peer
keeps the pipe full: one such call took 0.67 s and 215 MB for a 5 MB flood. So the meter
cannot live in that thread. This one sleeps in poll(2) on the peers' sockets: it wakes
when a peer sends anything (a gateway almost never does) and at least every
CHECK_EVERY_S, and under a flood it checks at most every MIN_GAP_S. What a flooding peer
can cost is stated in docs/PROTOCOL.md "Limits of the PUB port".

ipc:// peers are counted, not metered. The counters are read by the publish thread.
What crosses the boundary: monitor events in; shutdown(2) on offending connections out.
"""

from __future__ import annotations

import logging
import os
import socket
import struct
import threading
import time
from dataclasses import dataclass

import zmq
from zmq.utils.monitor import recv_monitor_message

log = logging.getLogger(__name__)

_TCPI_BYTES_RECEIVED = 128  # offset of the u64 tcpi_bytes_received in struct tcp_info (Linux >= 4.1)
CHECK_EVERY_S = 0.2  # at least this often, also when no peer sends anything (the rate term grows)
MIN_GAP_S = 0.001  # under a flood the poll wakes at once: bound the guard's own CPU
LOG_EVERY_S = 10.0  # at most one line per this, whatever the flood


@dataclass
class _Peer:
    sock: socket.socket  # our duplicate: always this connection, even after libzmq reuses the number
    since: float
    metered: bool  # TCP (TCP_INFO available); ipc peers are only counted


class PeerGuard:
    """Counts and meters the PUB socket's peers from its own thread; `close()` stops it."""

    def __init__(self, sock: zmq.Socket, max_peers: int, burst_bytes: int, rate_bytes_s: int):
        self._monitor = sock.get_monitor_socket(zmq.EVENT_ACCEPTED | zmq.EVENT_DISCONNECTED | zmq.EVENT_CLOSED)
        self._socket = sock
        self.max_peers, self.burst_bytes, self.rate_bytes_s = max_peers, burst_bytes, rate_bytes_s
        self._peers: dict[int, _Peer] = {}  # libzmq's fd -> our duplicate
        self.refused = self.dropped = 0
        self._connected = 0
        self._next_log = 0.0
        self._wake_r, self._wake_w = os.pipe()  # close() wakes the poll through this
        self._thread = threading.Thread(target=self._run, name="publisher-peer-guard", daemon=True)
        self._thread.start()

    @property
    def peers(self) -> int:
        return self._connected

    def close(self) -> None:
        """Stop the thread, close the duplicates and the monitor (before the PUB socket closes)."""
        if self._thread.is_alive():
            os.write(self._wake_w, b"x")
            self._thread.join(5)
        # In this order: libzmq's I/O thread sends monitor events with a blocking send, so the
        # monitor must be open until the PUB socket stops sending them, or that thread hangs.
        self._socket.disable_monitor()
        self._monitor.close(linger=0)
        os.close(self._wake_r)
        os.close(self._wake_w)

    # ------------------------------------------------------------------ the thread

    def _run(self) -> None:
        try:
            while self._turn():
                time.sleep(MIN_GAP_S)
        except (zmq.ZMQError, OSError) as err:  # the context terminated under us, or fds ran out
            log.error("publisher: peer guard stopped, peers are no longer metered: %s", err)
        finally:
            for peer in self._peers.values():
                peer.sock.close()
            self._peers.clear()

    def _turn(self) -> bool:
        """One poll: read events, meter every peer; False once close() asked to stop."""
        poller = zmq.Poller()
        poller.register(self._monitor, zmq.POLLIN)
        poller.register(self._wake_r, zmq.POLLIN)
        for peer in self._peers.values():
            if peer.metered:
                poller.register(peer.sock, zmq.POLLIN)  # level-triggered: wakes while it has unread bytes
        ready = dict(poller.poll(CHECK_EVERY_S * 1000))
        if self._wake_r in ready:
            return False
        now = time.monotonic()
        self._read_events(now)
        self._meter(now)
        return True

    def _meter(self, now: float) -> None:
        for fd, peer in list(self._peers.items()):
            received = _bytes_received(peer.sock) if peer.metered else None
            if received is not None and received > self.burst_bytes + self.rate_bytes_s * (now - peer.since):
                self.dropped += 1
                del self._peers[fd]
                self._connected = len(self._peers)
                self._drop(peer.sock, f"sent {received} bytes in {now - peer.since:.1f} s")

    def _read_events(self, now: float) -> None:
        while True:
            try:
                event = recv_monitor_message(self._monitor, zmq.NOBLOCK)
            except zmq.Again:
                return
            fd = int(event["value"])
            if event["event"] == zmq.EVENT_ACCEPTED:
                self._accepted(fd, now)
            else:
                self._forget(fd)

    def _accepted(self, fd: int, now: float) -> None:
        sock = _dup(fd)
        if sock is None:  # already closed by libzmq: its DISCONNECTED event follows
            return
        self._forget(fd)  # a number libzmq reused before we read the earlier connection's end
        if len(self._peers) >= self.max_peers:
            self.refused += 1
            self._drop(sock, f"more than publisher.max_gateways ({self.max_peers}) connected")
            return
        self._peers[fd] = _Peer(sock, now, sock.family in (socket.AF_INET, socket.AF_INET6))
        self._connected = len(self._peers)

    def _forget(self, fd: int) -> None:
        peer = self._peers.pop(fd, None)
        if peer is not None:
            peer.sock.close()  # only our duplicate: libzmq's descriptor stays as it is
        self._connected = len(self._peers)

    def _drop(self, sock: socket.socket, why: str) -> None:
        address = _peername(sock)
        try:
            sock.shutdown(socket.SHUT_RDWR)  # libzmq sees the connection end and frees the peer's pipe
        except OSError:
            pass
        sock.close()
        now = time.monotonic()
        if now >= self._next_log:
            self._next_log = now + LOG_EVERY_S
            log.warning("publisher: dropped peer %s: %s (%d refused, %d dropped so far; one line per %.0f s)",
                        address, why, self.refused, self.dropped, LOG_EVERY_S)


def _dup(fd: int) -> socket.socket | None:
    try:
        return socket.socket(fileno=os.dup(fd))
    except OSError:
        return None


def _peername(sock: socket.socket) -> object:
    try:
        return sock.getpeername()
    except OSError:
        return None


def _bytes_received(sock: socket.socket) -> int | None:
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 256)
    except OSError:
        return None
    return struct.unpack_from("=Q", info, _TCPI_BYTES_RECEIVED)[0] if len(info) >= 136 else None
