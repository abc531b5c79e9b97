"""/metrics and /healthz over real HTTP on loopback, from a real running pipeline."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from pipeline.composition.app import StartupError
from pipeline.composition.driver import RunDriver, StopReason, Until
from pipeline.config.models import HttpConfig
from pipeline.service.daemon.daemon_service import DaemonService
from pipeline.service.daemon.health import HealthMonitor
from pipeline.service.daemon.http_endpoint import HttpEndpoint
from pipeline.service.daemon.metrics import PipelineMetrics
from pipeline.service.daemon.notify import SdNotifier
from tests.pipeline_helpers import VerdictCollector, make_config

pytestmark = pytest.mark.timeout(90)


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as reply:
            return reply.status, reply.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def samples(text: str) -> dict[tuple[str, tuple], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def health_command(url: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline", "health", "--url", url],
                          capture_output=True, text=True, timeout=30)


def test_healthz_is_503_while_starting_and_unknown_paths_404():
    monitor = HealthMonitor(stage_stall_s=1.0)
    endpoint = HttpEndpoint.from_config(HttpConfig(port=0), PipelineMetrics(monitor).registry, monitor)
    endpoint.start()
    try:
        code, body = get(endpoint.url + "/healthz")
        assert code == 503
        assert json.loads(body)["reason"].startswith("starting")
        assert get(endpoint.url + "/nothing")[0] == 404
        assert get(endpoint.url + "/livez")[0] == 200  # starting is alive: no restart while warming up
        code, body = get(endpoint.url + "/readyz")
        assert code == 503 and body.startswith(b"starting")
        checked = health_command(endpoint.url + "/healthz")
        assert checked.returncode == 1 and "starting" in checked.stdout
        # a second endpoint on the same port is a start-up error naming the port
        port = endpoint.port
        with pytest.raises(StartupError, match=f"127.0.0.1:{port}"):
            HttpEndpoint.from_config(HttpConfig(port=port), PipelineMetrics(monitor).registry, monitor)
    finally:
        endpoint.close()


def test_metrics_and_health_of_a_running_pipeline(free_tcp_endpoint):
    frames = 40
    config = make_config(free_tcp_endpoint, cameras=2, fps=20)
    service = DaemonService(config, SdNotifier(None))
    collector = VerdictCollector(free_tcp_endpoint)
    seen: dict = {}
    try:
        service.open()
        driver = RunDriver(config, frames)
        driver.open()
        service.attach(driver.handle)
        driver.start()
        for _ in range(600):
            if service.monitor.check().healthy:
                break
            threading.Event().wait(0.05)
        seen["health"] = get(service.http.url + "/healthz")
        seen["probes"] = [get(service.http.url + p) for p in ("/livez", "/readyz")]
        seen["cli"] = health_command(service.http.url + "/healthz")
        assert driver.run(Until(duration_s=60)) is StopReason.ENDED
        code = driver.stop(10)
        seen["metrics"] = get(service.http.url + "/metrics")
    finally:
        service.close()
        collector.close()
    assert code == 0
    code, body = seen["health"]
    assert code == 200 and json.loads(body) == {"status": "ok", "ready": True, "healthy": True,
                                                "progressing": True, "reason": ""}
    assert seen["cli"].returncode == 0 and seen["cli"].stdout.strip() == "ok"
    assert seen["probes"] == [(200, b"ok\n"), (200, b"ok\n")]
    status, text = seen["metrics"]
    assert status == 200
    m = samples(text.decode())
    for cam in ("cam0", "cam1"):
        published = sum(v for (name, labels), v in m.items()
                        if name == "inspection_verdicts_total" and ("camera", cam) in labels)
        assert published == frames  # one verdict per frame, each counted once
        assert m[("inspection_end_to_end_latency_seconds_count", (("camera", cam),))] == frames
        assert m[("inspection_camera_frames_captured_total", (("camera", cam),))] == frames
        assert sum(v for (name, labels), v in m.items() if name == "inspection_camera_state"
                   and ("camera", cam) in labels) == 1.0  # exactly one state at a time
    inspected = sum(v for (name, labels), v in m.items()
                    if name == "inspection_verdicts_total" and ("result", "NOT_INSPECTED") not in labels)
    assert m[("inspection_stage_latency_seconds_count", (("stage", "infer"),))] == inspected
    for queue in ("preprocess", "infer", "decide", "publish"):
        assert ("inspection_queue_depth", (("queue", queue),)) in m
        assert ("inspection_queue_drops_total", (("queue", queue),)) in m
    assert m[("inspection_ready", ())] == 1.0
    assert m[("inspection_config_reloads_total", (("result", "applied"),))] == 0
    assert ("inspection_health_state", (("state", "STOPPING"),)) in m
