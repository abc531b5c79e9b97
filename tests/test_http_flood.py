"""The HTTP endpoint under a connection flood, on loopback: 1,000 idle peers below the
connection limit, then more peers than the limit, then peers that vanish mid-request.
Bounded in count and time for a shared 2-core machine."""

from __future__ import annotations

import logging
import resource
import socket
import threading
import time
import urllib.request

import pytest

from pipeline.config.models import HttpConfig
from pipeline.service.daemon.health import HealthMonitor
from pipeline.service.daemon.http_endpoint import HttpEndpoint
from pipeline.service.daemon.metrics import PipelineMetrics
from tests.waiting import wait_until

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(autouse=True)
def enough_descriptors():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 4096 if hard == resource.RLIM_INFINITY else min(hard, 4096)
    if want < 2600:
        pytest.skip(f"needs 2,600 open files (peers and their server ends), the hard limit is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, want), hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def endpoint(**cfg) -> HttpEndpoint:
    monitor = HealthMonitor(stage_stall_s=1.0)
    ep = HttpEndpoint.from_config(HttpConfig(port=0, **cfg), PipelineMetrics(monitor).registry, monitor)
    ep.start()
    return ep


def idle_peers(ep: HttpEndpoint, count: int) -> list[socket.socket]:
    peers = []
    for _ in range(count):
        peer = socket.create_connection(("127.0.0.1", ep.port), timeout=5)
        peers.append(peer)
    return peers


def healthz_ms(ep: HttpEndpoint, timeout_s: float = 10) -> tuple[int, float]:
    t0 = time.perf_counter()
    try:
        with urllib.request.urlopen(ep.url + "/healthz", timeout=timeout_s) as reply:
            code = reply.status
    except urllib.error.HTTPError as err:
        code = err.code
    return code, (time.perf_counter() - t0) * 1000


def test_healthz_answers_with_1000_idle_peers_connected_and_no_thread_per_peer():
    ep = endpoint(max_connections=1100, idle_timeout_s=60)
    threads_before = threading.active_count()
    peers = idle_peers(ep, 1000)
    try:
        assert wait_until(lambda: ep.sockets_held >= 1000, 30, poll_s=0.05), ep.sockets_held  # all accepted, all idle
        answers = [healthz_ms(ep) for _ in range(9)]
        assert all(code == 503 for code, _ in answers)  # "starting": the answer itself, not a timeout
        assert threading.active_count() <= threads_before + 2, "a thread per connection"
        ms = sorted(ms for _, ms in answers)
        print(f"/healthz with 1000 idle peers: median {ms[4]:.1f} ms, max {ms[-1]:.1f} ms")
    finally:
        for peer in peers:
            peer.close()
        ep.close()


def test_past_the_limit_idle_peers_are_closed_and_healthz_is_answered_again():
    ep = endpoint(max_connections=50, idle_timeout_s=1)
    peers = idle_peers(ep, 200)  # 150 wait in the kernel's backlog
    try:
        code, _ = healthz_ms(ep, timeout_s=30)  # answered once the idle ones time out
        assert code == 503
        deadline = time.monotonic() + 30
        closed = 0
        for peer in peers[:50]:  # the accepted ones were closed by the server, not by us
            peer.settimeout(max(0.1, deadline - time.monotonic()))
            closed += peer.recv(1) == b""
        assert closed == 50
    finally:
        for peer in peers:
            peer.close()
        ep.close()


def test_peers_that_vanish_mid_request_cost_no_traceback(caplog):
    caplog.set_level(logging.DEBUG)
    ep = endpoint(max_connections=200, idle_timeout_s=5)
    try:
        for i in range(100):
            peer = socket.create_connection(("127.0.0.1", ep.port), timeout=5)
            peer.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n" if i % 2 else b"GET /healthz HTTP/1.1\r\n\r\n")
            peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")  # RST
            peer.close()
        big = socket.create_connection(("127.0.0.1", ep.port), timeout=5)
        big.sendall(b"GET /healthz HTTP/1.1\r\nX-Pad: " + b"a" * 20_000 + b"\r\n\r\n")  # past the 8 kB header bound
        assert big.recv(64).startswith(b"HTTP/1.0 431")
        big.close()
        code, _ = healthz_ms(ep)
        assert code == 503
    finally:
        ep.close()
    assert not [r for r in caplog.records if r.exc_info], "a client going away logged a traceback"


def test_start_up_refuses_a_descriptor_limit_below_the_configured_maxima(tmp_path, free_tcp_endpoint):
    """A real `pipeline run` under a hard limit of 600 open files with the default 2,000
    HTTP connections: exit 2 naming both numbers, before anything starts."""
    import subprocess
    import sys

    from tests.pipeline_helpers import ROOT, write_config

    config = write_config(tmp_path / "line.yaml", free_tcp_endpoint)
    limit = "import resource, runpy, sys; resource.setrlimit(resource.RLIMIT_NOFILE, (600, 600)); "
    code = limit + f"sys.argv = ['pipeline', 'run', {str(config)!r}]; runpy.run_module('pipeline', run_name='__main__')"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert "open-file limit 600 (hard 600) is below the 2512" in done.stderr and "Traceback" not in done.stderr
