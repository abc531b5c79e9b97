"""A measurement, run by hand (not a test): a real `pipeline run` daemon under a connection
flood, as issue 14 reported it. Its figures are in docs/RELIABILITY.md.

    python -m tests.flood_probe [PEERS]        (default 1000; prints one JSON line)

One synthetic camera at 30 fps with the demo model, budget 250 ms, on loopback. For 8 s
without peers and then for 8 s with PEERS idle TCP connections on the HTTP port and PEERS
on the PUB port, it records what a gateway connected from the start receives (verdicts,
deadline FAILs), `/healthz`'s answer times, and, in the flood, how long a new gateway
waits for its first verdict.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

import yaml

from tests.pipeline_helpers import ROOT, VerdictCollector, config_dict
from tests.ports import free_port

WINDOW_S = 8.0


def healthz_ms(port: int) -> float:
    t0 = time.perf_counter()
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10).close()
    except urllib.error.HTTPError:
        pass  # 503 is an answer too
    return (time.perf_counter() - t0) * 1000


def window(gateway: VerdictCollector, http_port: int) -> dict:
    """What the gateway receives in WINDOW_S, and /healthz's answer times meanwhile."""
    start, times = len(gateway.verdicts["cam0"]), []
    end = time.monotonic() + WINDOW_S
    while time.monotonic() < end:
        times.append(healthz_ms(http_port))
        time.sleep(0.5)  # paces the /healthz probes: two a second, as a monitoring system might
    got = gateway.verdicts["cam0"][start:]
    deadline = sum(1 for v in got if any(r.get("code") == "deadline" for r in v.get("reasons") or ()))
    times.sort()
    return {"verdicts": len(got), "deadline_fails": deadline, "outcomes": dict(Counter(v["verdict"] for v in got)),
            "healthz_median_ms": round(times[len(times) // 2], 1), "healthz_max_ms": round(times[-1], 1)}


def connect_idle(port: int, count: int) -> list[socket.socket]:
    return [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(count)]


def main(peers: int) -> None:
    http_port, pub = free_port(), f"tcp://127.0.0.1:{free_port()}"
    config = Path(tempfile.mkdtemp()) / "flood.yaml"
    config.write_text(yaml.safe_dump(config_dict(pub, budget_ms=250, http={"port": http_port})))
    daemon = subprocess.Popen([sys.executable, "-m", "pipeline", "--log-level", "WARNING", "run", str(config)],
                              cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    gateway = VerdictCollector(pub)
    held: list[socket.socket] = []
    try:
        assert gateway.wait_for({"cam0": 30}, 60), "the daemon published nothing"
        quiet = window(gateway, http_port)
        held = connect_idle(http_port, peers) + connect_idle(int(pub.rsplit(":", 1)[1]), peers)
        t0 = time.monotonic()
        late = VerdictCollector(pub)
        late.wait_for({"cam0": 1}, 30)
        first_verdict_s = time.monotonic() - t0
        flood = window(gateway, http_port)
        flood["peers"] = gateway.heartbeats[-1].get("peers")
        late.close()
    finally:
        for sock in held:
            sock.close()
        gateway.close()
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(30)
    print(json.dumps({"peers_per_port": peers, "quiet": quiet, "flood": flood,
                      "new_gateway_first_verdict_s": round(first_verdict_s, 2), "daemon_exit": daemon.returncode}))


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1000)
