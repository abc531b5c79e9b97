"""One end of the latency clock: the wire's `latency_ms.total`, the `/metrics` histogram,
the status line's window and the bench's figures agree on the same frames.

The real pipeline through the run driver (synthetic cameras, ONNX Runtime with
engines/demo.onnx, the ZeroMQ publisher), a real SUB socket reading the wire, the daemon's real HTTP endpoint scraped
for /metrics, and the bench's own recorder as one more verdict sink.
"""

from __future__ import annotations

import socket
import urllib.request
from collections import defaultdict

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from pipeline.composition.driver import RunDriver, StopReason, Substitutions, Until
from pipeline.service.bench.recording import Recorder
from pipeline.service.bench.report import summarise
from pipeline.service.bench.runner import RunResult
from pipeline.service.daemon.daemon_service import DaemonService
from pipeline.service.daemon.notify import SdNotifier
from tests.pipeline_helpers import VerdictCollector, assert_exactly_once, make_config

pytestmark = pytest.mark.timeout(90)

FRAMES = 30
CAMERAS = ("cam0", "cam1")
WIRE_ROUNDING_MS = 0.0005  # the wire rounds latency_ms to 3 decimals


def scrape(url: str) -> dict[tuple[str, tuple], float]:
    with urllib.request.urlopen(url, timeout=5) as reply:
        text = reply.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """(wire verdicts per camera, exact ms per camera from the bench's recorder, the
    /metrics samples, the telemetry, the recorder) of one run of FRAMES per camera."""
    endpoint = _free_endpoint()
    config = make_config(endpoint, cameras=len(CAMERAS), fps=60)
    service = DaemonService(config, SdNotifier(None))
    collector = VerdictCollector(endpoint)
    recorder = Recorder(start_ns=0)  # the bench's recorder, every frame in its window
    driver = RunDriver(config, frames=FRAMES, substitutions=Substitutions(sinks=(recorder,)))
    try:
        service.open()
        pipeline = driver.open()
        service.attach(driver.handle)  # /metrics becomes a sink, as in `pipeline run`
        driver.start()
        assert driver.run(Until(duration_s=60)) is StopReason.ENDED
        assert driver.stop(10) == 0
        assert collector.wait_for(dict.fromkeys(CAMERAS, FRAMES), 10)
        metrics = scrape(service.http.url + "/metrics")
    finally:
        service.close()
        collector.close()
    exact = defaultdict(list)  # in publish order, as the wire's seq
    for camera, _outcome, _late, t_capture, _marks, t_publish, _ts, _takes in recorder.records:
        exact[camera].append(t_publish - t_capture)
    return collector.verdicts, exact, metrics, pipeline.telemetry, recorder, config.budget_ms


def _free_endpoint() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{s.getsockname()[1]}"


def test_the_bench_records_the_wires_total_for_every_frame(run):
    wire, exact_ns, *_ = run
    for camera in CAMERAS:
        assert_exactly_once(wire[camera], FRAMES)
        totals = [v["latency_ms"]["total"] for v in wire[camera]]
        assert totals == [round(ns / 1e6, 3) for ns in exact_ns[camera]]


def test_the_bench_report_is_the_wires_figures(run):
    wire, _exact, _metrics, _telemetry, recorder, budget_ms = run
    report, _ = summarise("pipeline", RunResult(recorder), budget_ms)
    inspected = np.array([v["latency_ms"]["total"] for c in CAMERAS for v in wire[c] if v["verdict"] != "NOT_INSPECTED"])
    assert len(inspected) >= 5  # a loaded machine sheds some (NOT_INSPECTED has no latency to compare)
    for key, q in (("p50_ms", 50), ("p99_ms", 99)):
        assert report[key] == pytest.approx(np.percentile(inspected, q), abs=2 * WIRE_ROUNDING_MS)
    assert report["max_ms"] == pytest.approx(inspected.max(), abs=2 * WIRE_ROUNDING_MS)


def test_the_metrics_histogram_holds_the_wires_totals(run):
    wire, exact_ns, metrics, *_ = run
    for camera in CAMERAS:
        labels = (("camera", camera),)
        name = "inspection_end_to_end_latency_seconds"
        assert metrics[(f"{name}_count", labels)] == FRAMES
        totals = [v["latency_ms"]["total"] for v in wire[camera]]
        assert metrics[(f"{name}_sum", labels)] * 1000 == pytest.approx(sum(totals), abs=FRAMES * WIRE_ROUNDING_MS)
        buckets = {dict(lb)["le"]: n for (metric, lb), n in metrics.items()
                   if metric == f"{name}_bucket" and dict(lb)["camera"] == camera}
        seconds = [ns / 1e9 for ns in exact_ns[camera]]
        for le, count in buckets.items():
            assert count == sum(s <= float(le) for s in seconds), le


def test_the_status_lines_window_holds_the_wires_totals(run):
    wire, _exact, _metrics, telemetry, *_ = run
    totals = np.array([v["latency_ms"]["total"] for c in CAMERAS for v in wire[c]])
    p50, p99 = telemetry.latency.percentiles(50, 99)  # the status line's and systemd STATUS's figures
    assert p50 == pytest.approx(np.percentile(totals, 50), abs=2 * WIRE_ROUNDING_MS)
    assert p99 == pytest.approx(np.percentile(totals, 99), abs=2 * WIRE_ROUNDING_MS)
