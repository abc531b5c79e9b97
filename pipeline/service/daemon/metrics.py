"""Prometheus metrics of a running pipeline, on a private prometheus-client registry.

Owns the metric names and what each one means (docs/OPERATIONS.md lists them). Two
kinds of source:
- per verdict, pushed: `PipelineMetrics` is a `VerdictSink`, called by the publish
  thread after the verdict has gone out. It feeds the per-stage and end-to-end latency
  histograms (end to end: `PublishedVerdict.latency_ms`, the wire's `latency_ms.total`)
  and the verdict counter (label children are cached, so a verdict costs a few dict
  lookups and histogram increments, no allocation of label tuples);
- everything else, pulled: `TelemetryCollector` reads telemetry, the health monitor,
  the archive and (where the NVIDIA management library is present) GPU memory at
  scrape time, so nothing is computed unless someone is looking.
"""

from __future__ import annotations

import logging
import time
from typing import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from pipeline.core.messages import PublishedVerdict, mark_spans, queue_waits
from pipeline.core.states import CameraState, Health, StageState
from pipeline.core.telemetry import Telemetry
from pipeline.service.daemon.health import HealthMonitor

log = logging.getLogger(__name__)

# Seconds; dense around the 30 ms budget, with a tail that still tells "late" from "stuck".
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.025, 0.03, 0.04, 0.05,
                   0.075, 0.1, 0.25, 0.5, 1.0, 2.5)


class PipelineMetrics:
    def __init__(self, monitor: HealthMonitor, archive=None, registry: CollectorRegistry | None = None):
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.stage_latency = Histogram("inspection_stage_latency_seconds", "Time each stage added to a frame "
                                       "(since the previous stage's mark)", ["stage"], buckets=LATENCY_BUCKETS, registry=r)
        self.stage_wait = Histogram("inspection_stage_queue_wait_seconds", "Part of each stage's latency spent "
                                    "waiting in its queue (the rest is its work)", ["stage"], buckets=LATENCY_BUCKETS,
                                    registry=r)
        self.e2e_latency = Histogram("inspection_end_to_end_latency_seconds", "Capture to verdict published",
                                     ["camera"], buckets=LATENCY_BUCKETS, registry=r)
        self.verdicts = Counter("inspection_verdicts", "Verdicts published", ["camera", "result"], registry=r)
        self.reloads = Counter("inspection_config_reloads", "SIGHUP reloads by result", ["result"], registry=r)
        for result in ("applied", "rejected"):
            self.reloads.labels(result)
        self.collector = TelemetryCollector(monitor, archive)  # reads telemetry and archive at scrape time
        r.register(self.collector)
        ProcessCollector(registry=r)
        self._stage_children: dict[str, object] = {}
        self._wait_children: dict[str, object] = {}
        self._camera_children: dict[str, object] = {}
        self._verdict_children: dict[tuple[str, str], object] = {}

    def verdict_published(self, published: PublishedVerdict) -> None:
        job = published.job
        frame = job.frame
        for stage, start, t_ns in mark_spans(frame.t_capture_ns, job.marks):
            child = self._stage_children.get(stage) or self._stage_children.setdefault(stage, self.stage_latency.labels(stage))
            child.observe((t_ns - start) / 1e9)
        for stage, wait_ns in queue_waits(frame.t_capture_ns, job.marks, job.takes):
            child = self._wait_children.get(stage) or self._wait_children.setdefault(stage, self.stage_wait.labels(stage))
            child.observe(wait_ns / 1e9)
        cam = frame.camera_id
        e2e = self._camera_children.get(cam) or self._camera_children.setdefault(cam, self.e2e_latency.labels(cam))
        e2e.observe(published.latency_ns / 1e9)
        key = (cam, job.verdict.outcome.value)
        counter = self._verdict_children.get(key) or self._verdict_children.setdefault(key, self.verdicts.labels(*key))
        counter.inc()


class TelemetryCollector(Collector):
    """Gauges and counters read from telemetry at scrape time."""

    def __init__(self, monitor: HealthMonitor, archive=None):
        self.monitor = monitor
        self.archive = archive
        self._gpu = GpuMemory()

    def collect(self) -> Iterator:
        report = self.monitor.check()
        yield _gauge("inspection_ready", "1 once the model is warm and every camera delivered a frame", report.ready)
        yield _gauge("inspection_healthy", "1 when /healthz answers 200", report.healthy)
        yield _gauge("inspection_progressing", "1 while every stage makes progress (watchdog pings go out)",
                     report.progressing)
        t = self.monitor.telemetry
        if t is not None:
            yield from _health(t)
            yield from _queues(t)
            yield from _stages(t)
            yield from _cameras(t)
            yield _counter("inspection_publisher_dropped", "Messages the PUB socket could not queue", t.published_dropped)
        if self.archive is not None:
            yield from _archive(self.archive.stats())
        yield from self._gpu.collect()


def _gauge(name: str, doc: str, value: float, labels: dict[str, str] | None = None) -> GaugeMetricFamily:
    g = GaugeMetricFamily(name, doc, labels=list(labels) if labels else None)
    g.add_metric(list(labels.values()) if labels else [], float(value))
    return g


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, value=float(value))


def _health(t: Telemetry) -> Iterator:
    current = t.current_health()
    g = GaugeMetricFamily("inspection_health_state", "1 for the current health state", labels=["state"])
    for state in Health:
        g.add_metric([state.value], float(state is current))
    yield g


def _queues(t: Telemetry) -> Iterator:
    depth = GaugeMetricFamily("inspection_queue_depth", "Jobs waiting in each stage's inbox", labels=["queue"])
    cap = GaugeMetricFamily("inspection_queue_capacity", "Capacity of each queue (publish: backlog level)", labels=["queue"])
    high = GaugeMetricFamily("inspection_queue_high_water", "Deepest each queue has been", labels=["queue"])
    drops = CounterMetricFamily("inspection_queue_drops", "Jobs shed by each queue's overflow policy "
                                "(each still got a NOT_INSPECTED verdict)", labels=["queue"])
    for name, q in list(t.queues.items()):
        depth.add_metric([name], q.depth)
        cap.add_metric([name], q.capacity)
        high.add_metric([name], q.high_water)
        drops.add_metric([name], q.drops)
    yield from (depth, cap, high, drops)


def _stages(t: Telemetry) -> Iterator:
    now = time.monotonic_ns()
    processed = CounterMetricFamily("inspection_stage_processed", "Frames each stage handled", labels=["stage"])
    errors = CounterMetricFamily("inspection_stage_errors", "Frames each stage failed (ERROR verdicts)", labels=["stage"])
    since = GaugeMetricFamily("inspection_stage_seconds_since_progress", "Seconds since each stage last made progress",
                              labels=["stage"])
    running = GaugeMetricFamily("inspection_stage_running", "1 while the stage thread runs", labels=["stage"])
    for s in list(t.stages.values()):
        processed.add_metric([s.name], s.processed)
        errors.add_metric([s.name], s.errors)
        since.add_metric([s.name], (now - s.last_progress_ns) / 1e9)
        running.add_metric([s.name], float(s.state is StageState.RUNNING))
    yield from (processed, errors, since, running)


def _cameras(t: Telemetry) -> Iterator:
    state = GaugeMetricFamily("inspection_camera_state", "1 for each camera's current state", labels=["camera", "state"])
    frames = CounterMetricFamily("inspection_camera_frames_captured", "Frames captured per camera", labels=["camera"])
    for cam in list(t.cameras.values()):
        for s in CameraState:
            state.add_metric([cam.camera_id, s.value], float(cam.state is s))
        frames.add_metric([cam.camera_id], cam.frames_captured)
    yield from (state, frames)


def _archive(stats: dict[str, int]) -> Iterator:
    yield _counter("inspection_archive_saved", "Frames written to the failed-part archive", stats["saved"])
    yield _counter("inspection_archive_skipped", "Frames not archived because its queue was full", stats["skipped"])
    yield _counter("inspection_archive_errors", "Frames the archive failed to write", stats["errors"])
    yield _counter("inspection_archive_evicted", "Frames removed to stay within the quota", stats["evicted"])
    yield _gauge("inspection_archive_bytes", "Bytes the archive holds on disk", stats["bytes"])


class GpuMemory:
    """GPU memory through NVML (`nvidia-ml-py`, the `gpu` extra), where it is present."""

    def __init__(self):
        self._nvml = None
        self._tried = False

    def _open(self):
        self._tried = True
        try:
            import pynvml  # optional: present with the gpu extra on an NVIDIA host

            pynvml.nvmlInit()
            self._nvml = pynvml
        except Exception as exc:  # noqa: BLE001 - absent library or driver: GPU memory unknown
            log.debug("GPU memory not reported: %s", exc)

    def collect(self) -> Iterator:
        if not self._tried:
            self._open()
        if self._nvml is None:
            return
        nv = self._nvml
        used = GaugeMetricFamily("inspection_gpu_memory_used_bytes", "GPU memory in use (all processes)", labels=["gpu"])
        total = GaugeMetricFamily("inspection_gpu_memory_total_bytes", "GPU memory on the device", labels=["gpu"])
        for i in range(nv.nvmlDeviceGetCount()):
            info = nv.nvmlDeviceGetMemoryInfo(nv.nvmlDeviceGetHandleByIndex(i))
            used.add_metric([str(i)], info.used)
            total.add_metric([str(i)], info.total)
        yield from (used, total)
