"""The PUB port against hostile peers, over real loopback TCP: an oversized frame, a
subscription flood, and the publisher instance id a gateway uses to see a restart.

Memory is measured in a fresh Python process that runs the publisher (`probe`), so memory
freed by an earlier test cannot hide growth: the growth is its peak resident set during
the attack (VmHWM) less its resident set before, so memory taken and freed again counts.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import subprocess
import sys
import threading
import time

import pytest
import zmq

from pipeline.core.protocol import decode
from tests.waiting import wait_until
from tests.zmq_helpers import join_sub, make_job, publisher, sub_socket

pytestmark = pytest.mark.timeout(60)
MB = 1 << 20


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_rss_bytes() -> int:
    """The process's highest resident set so far (VmHWM)."""
    with open("/proc/self/status") as f:
        line = next(line for line in f if line.startswith("VmHWM:"))
    return int(line.split()[1]) * 1024


def zmtp_null_greeting(socket_type: bytes) -> bytes:
    """A ZMTP 3.0 greeting with the NULL mechanism, then its READY command."""
    greeting = b"\xff" + b"\x00" * 8 + b"\x7f" + b"\x03\x00" + b"NULL".ljust(20, b"\x00") + b"\x00" + b"\x00" * 31
    body = b"\x05READY" + b"\x0bSocket-Type" + struct.pack(">I", len(socket_type)) + socket_type
    return greeting + b"\x04" + bytes([len(body)]) + body


def zmtp_peer(endpoint: str, socket_type: bytes, timeout_s: float = 10) -> socket.socket:
    """A raw TCP peer that has done the ZMTP handshake (greeting and READY both ways)."""
    peer = socket.create_connection(("127.0.0.1", int(endpoint.rsplit(":", 1)[1])), timeout=timeout_s)
    peer.sendall(zmtp_null_greeting(socket_type))
    got = b""
    while b"XPUB" not in got:  # the daemon's READY names its socket type last
        data = peer.recv(256)
        assert data, "the daemon closed the connection during the handshake"
        got += data
    return peer


class Pump(threading.Thread):
    """The publish stage's part: owns the publisher and sends verdicts and heartbeats until stopped."""

    def __init__(self, pub):
        super().__init__(daemon=True)
        self.pub, self.stop = pub, threading.Event()

    def run(self) -> None:
        for frame_id in range(1 << 62):
            if self.stop.is_set():
                return
            self.pub.publish_verdict(make_job("cam0", frame_id))
            self.pub.publish_heartbeat({"health": "OK"})
            time.sleep(0.001)  # paces the publisher like a daemon's heartbeats, only faster


def send_oversized_frame(pub) -> tuple[bool, int, int]:
    """A peer declares a 2 GiB frame and streams up to 64 MB of it: (dropped, MB sent, growth)."""
    pump = Pump(pub)
    pump.start()
    before = rss_bytes()
    peer = zmtp_peer(pub.endpoint, b"SUB")
    sent, chunk, dropped = 0, b"\x00" * MB, False
    try:
        peer.sendall(b"\x02" + struct.pack(">Q", 2 << 30))  # a long message frame of 2 GiB
        while sent < 64 * MB:
            peer.sendall(chunk)
            sent += len(chunk)
    except OSError:
        dropped = True  # reset by the daemon: what we want
    growth = peak_rss_bytes() - before
    peer.close()
    pump.stop.set()
    pump.join(5)
    return dropped, sent // MB, growth


def probe(kind: str) -> None:
    """Run one attack in this (fresh) process and print its figures as JSON."""
    from tests.zmq_helpers import publisher as make
    context = zmq.Context()
    pub = make(context, max_subscriptions=100)  # the default per-peer byte budget
    if kind == "oversized":
        dropped, sent_mb, growth = send_oversized_frame(pub)
        result = {"dropped": dropped, "sent_mb": sent_mb, "growth_mb": growth / MB}
    else:
        t0 = time.monotonic()
        n, growth, dropped = flood_subscriptions(pub, 50_000, from_another_process=True)
        result = {"sent": n, "growth_mb": growth / MB, "seconds": time.monotonic() - t0, "dropped": dropped,
                  "guard_dropped": pub.guard.dropped}
    pub.close()
    context.term()
    print(json.dumps(result))


def run_probe(kind: str) -> dict:
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    code = f"from tests.test_pub_limits import probe; probe({kind!r})"
    done = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=50)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_frame_declaring_2_gb_drops_the_connection_without_allocating():
    result = run_probe("oversized")
    assert result["dropped"], f"the daemon read {result['sent_mb']} MB of a 2 GiB frame instead of dropping the peer"
    assert result["growth_mb"] <= 10, f"resident memory grew by {result['growth_mb']:.1f} MB"


def send_flood(endpoint: str, count: int, deadline: float, linger_s: float = 0.0) -> tuple[int, bool]:
    """The attacker: `count` unique ~240-byte subscriptions (12 MB at 50,000) from a raw
    ZMTP peer, which then waits up to `linger_s` for the daemon to take in all of it; (notices sent, whether
    the daemon cut it off)."""
    flood = zmtp_peer(endpoint, b"XSUB")
    n, batch, dropped = 0, [], False
    while n < count and time.monotonic() < deadline:
        topic = (b"inspect." if n % 2 else b"other.") + f"{n:08d}".encode() * 29
        batch.append(bytes([0, len(topic) + 1]) + b"\x01" + topic)  # a short ZMTP frame
        n += 1
        if len(batch) == 500:
            try:
                flood.sendall(b"".join(batch))  # TCP pushes back when the daemon reads slowly
            except OSError:
                dropped = True  # the daemon cut us off
                break
            batch = []
    # Closing with bytes still queued, or with unread bytes from the daemon (which makes the
    # close a reset), would discard what the daemon has not read yet: wait up to `linger_s`.
    wait_until(lambda: dropped or _unsent_bytes(flood) == 0, linger_s)
    _discard_received(flood)
    flood.close()
    return n, dropped


def _unsent_bytes(sock: socket.socket) -> int:
    """Bytes in our send queue the daemon's kernel has not acknowledged (SIOCOUTQ); 0 once closed."""
    import fcntl
    import termios

    try:
        return struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0"))[0]
    except OSError:
        return 0


def _discard_received(sock: socket.socket) -> None:
    sock.setblocking(False)
    try:
        while sock.recv(65536):
            pass
    except OSError:
        pass  # nothing more (EAGAIN), or reset by the daemon


def flood_subscriptions(pub, count: int, from_another_process: bool = False) -> tuple[int, int, bool]:
    """Flood `pub` while it keeps publishing (a Pump); (notices sent, resident memory growth,
    whether the daemon dropped the peer). From another process, the attacker's own memory
    and CPU do not count against the daemon's, as on a real network."""
    pump = Pump(pub)
    pump.start()
    before = rss_bytes()
    deadline = time.monotonic() + 30
    if from_another_process:
        code = f"from tests.test_pub_limits import send_flood; print(*send_flood({pub.endpoint!r}, {count}, 1e12, 0.5))"
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        done = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=40)
        sent, cut = done.stdout.split()
        n, dropped = int(sent), cut == "True"
    else:
        n, dropped = send_flood(pub.endpoint, count, deadline, linger_s=20)
    gate = pub.gate
    if not dropped:
        # every notice is refused or takes one of the gate's places (which the peer's leaving frees again)
        wait_until(lambda: gate.ignored + gate.over_limit + gate.max_topics >= n, max(0.0, deadline - time.monotonic()),
                   poll_s=0.05)
    growth = peak_rss_bytes() - before
    pump.stop.set()
    pump.join(5)
    return n, growth, dropped


def test_a_subscription_flood_is_counted_and_bounded_in_topics_and_does_not_stall_verdicts(context):
    """The subscription rule alone: the per-peer byte budget set out of the way."""
    pub = publisher(context, max_subscriptions=100, peer_burst_bytes=1 << 30)
    sub = sub_socket(context, pub.endpoint, b"inspect.cam0")
    join_sub(pub, sub)
    n, _, _ = flood_subscriptions(pub, 5_000)
    gate = pub.gate
    # half are not under "inspect.": ignored; of the other half 99 take the places the gateway's one leaves
    counts = (n, gate.ignored, gate.over_limit)
    assert counts == (5_000, 2_500, 2_401), f"(sent, ignored, over the limit): {counts}"
    assert gate.topics <= 100
    pub.publish_verdict(make_job("cam0"))  # the real gateway still gets its verdict at once
    assert sub.poll(2000) and decode(sub.recv_multipart()[1])["camera_id"] == "cam0"
    pub.close()


def test_a_subscription_flood_drops_the_peer_and_bounds_memory():
    """12 MB of unique subscriptions offered: the peer is cut off by its byte budget long before, and the
    daemon's peak memory grows by at most 10 MB (the bound of docs/PROTOCOL.md "Limits of the PUB port"
    is ~2.2 MB for one peer; the rest is margin for a loaded machine, where the guard wakes later)."""
    result = run_probe("subscriptions")
    assert result["dropped"] and result["guard_dropped"] == 1, result
    assert result["sent"] < 50_000, f"the flooding peer was never cut off: {result}"
    assert result["growth_mb"] <= 10, f"peak resident memory grew by {result['growth_mb']:.1f} MB: {result}"


def test_gateways_beyond_max_gateways_are_dropped_and_counted(context):
    pub = publisher(context, max_gateways=3)
    peers = [zmtp_peer(pub.endpoint, b"SUB") for _ in range(5)]
    wait_until(lambda: pub.guard.refused >= 2, 10, 0.05, each=lambda: pub.publish_heartbeat({"health": "OK"}))
    assert (pub.guard.refused, pub.guard.peers) == (2, 3)
    cut = 0
    for peer in peers:  # exactly the last two were cut off by the daemon
        peer.settimeout(0.5)
        try:
            cut += peer.recv(1) == b""
        except TimeoutError:
            pass
        except OSError:
            cut += 1
        peer.close()
    assert cut == 2
    pub.close()


def test_idle_peers_that_never_handshake_lock_out_a_gateway_for_at_most_the_handshake_timeout(context):
    """Idle TCP connections fill max_gateways; libzmq's own handshake timeout (30 s) would keep
    a real gateway out that long, the publisher's (3 s) lets it in well within 15 s."""
    pub = publisher(context, max_gateways=3)
    port = int(pub.endpoint.rsplit(":", 1)[1])
    idle = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(3)]
    try:
        assert wait_until(lambda: pub.guard.peers == 3, 10, each=lambda: pub.publish_heartbeat({"health": "OK"}))
        sub = sub_socket(context, pub.endpoint, b"", RECONNECT_IVL=100)
        assert wait_until(lambda: sub.poll(0), 15, poll_s=0.05, each=lambda: pub.publish_heartbeat({"health": "OK"})), \
            f"the gateway was kept out by {len(idle)} idle connections ({pub.guard.refused} refusals)"
        assert pub.guard.refused >= 1  # it was refused while the idle ones held the places
    finally:
        for peer in idle:
            peer.close()
        pub.close()


def test_every_verdict_and_heartbeat_names_the_instance_and_a_restart_changes_it(context):
    ids = []
    for _ in range(2):
        pub = publisher(context)
        sub = sub_socket(context, pub.endpoint, b"")
        join_sub(pub, sub)
        pub.publish_verdict(make_job("cam0"))
        pub.publish_heartbeat({"health": "OK"})
        verdict, heartbeat = (decode(sub.recv_multipart()[1]) for _ in range(2))
        assert verdict["instance"] == heartbeat["instance"] == pub.instance_id
        ids.append(pub.instance_id)
        sub.close()
        pub.close()
    assert ids[0] != ids[1] and all(len(i) == 16 for i in ids)


def test_curve_refusals_are_counted_and_logged_at_most_once_per_10_s(tmp_path, context, caplog):
    """30 intruders with a key not on the list, each retrying: one warning, all counted."""
    import logging

    from pipeline.parts.publishing.curve import make_curve_client, write_key_pair

    caplog.set_level(logging.WARNING, logger="pipeline.parts.publishing.curve")
    keys = tmp_path / "keys"
    for name in ("server", "gateway", "intruder"):
        write_key_pair(keys, name)
    curve = {"server_secret_key_file": str(keys / "server.key_secret"), "allowed_clients": [str(keys / "gateway.key")]}
    pub = publisher(context, curve=curve)
    intruders = []
    for _ in range(30):
        sock = context.socket(zmq.SUB)
        sock.setsockopt(zmq.LINGER, 0)
        make_curve_client(sock, keys / "server.key", keys / "intruder.key_secret")
        sock.connect(pub.endpoint)
        intruders.append(sock)
    allow_list = pub._authenticator.allow_list
    wait_until(lambda: allow_list.denied >= 30, 20, 0.05, each=lambda: pub.publish_heartbeat({"health": "OK"}))
    for sock in intruders:
        sock.close()
    pub.close()
    assert allow_list.denied >= 30
    lines = [r for r in caplog.records if "CURVE: refused" in r.getMessage()]
    assert len(lines) == 1
