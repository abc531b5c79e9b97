"""The gateway's Prometheus metrics and its health judgement (/metrics, /healthz).

Owns the metric names (docs/GATEWAY.md lists them) on a private registry, the
publish-to-PLC-write latency window, and `GatewayHealth.check()`, which answers in the
pipeline's own `HealthReport` shape so the daemon's HTTP endpoint serves it unchanged.
"""

from __future__ import annotations

from typing import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector

from pipeline.core.telemetry import LatencyWindow
from pipeline.service.daemon.health import HealthReport

# Seconds: publish -> acknowledged by the PLC's TCP stack; a few ms on a good link.
WRITE_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class GatewayMetrics:
    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self.received = Counter("gateway_verdicts_received", "Verdicts received from pipelines", ["camera"], registry=r)
        self.forwarded = Counter("gateway_verdicts_forwarded", "New results written to the PLC / served",
                                 ["camera", "output"], registry=r)
        self.write_latency = Histogram("gateway_write_latency_seconds", "Verdict published to the write "
                                       "acknowledged by the PLC (wall clocks)", ["output"], buckets=WRITE_BUCKETS,
                                       registry=r)
        self.write_failures = Counter("gateway_write_failures", "Writes to the PLC that failed", ["output"], registry=r)
        self.undelivered = Counter("gateway_results_undelivered", "Results never written (PLC link down "
                                   "or queue full)", ["output"], registry=r)
        self.reconnects = Counter("gateway_reconnects", "Links to the PLC re-established", ["output"], registry=r)
        self.connected = Gauge("gateway_output_connected", "1 while the output's link is up", ["output"], registry=r)
        self.acks = Counter("gateway_acks", "Acknowledgements written back by the PLC", ["camera", "output"], registry=r)
        self.acks_late = Counter("gateway_acks_late", "Results the PLC did not acknowledge within "
                                 "ack_timeout_ms", ["camera", "output"], registry=r)
        self.gaps = Counter("gateway_gaps", "Gaps and restarts seen in a pipeline's sequence", ["camera", "kind"],
                            registry=r)
        self.lost = Counter("gateway_verdicts_lost", "Verdicts a gap says never arrived", ["camera"], registry=r)
        self.ready = Gauge("gateway_camera_ready", "1 while the camera's result is valid (PLC may pass parts)",
                           ["camera"], registry=r)
        self.not_ready_reason = Gauge("gateway_camera_not_ready_reason", "NotReadyReason code (0: ready)",
                                      ["camera"], registry=r)
        self.malformed = Counter("gateway_malformed_messages", "Messages that were not valid protocol", registry=r)
        ProcessCollector(registry=r)
        self.latency: dict[str, LatencyWindow] = {}

    def observe_write(self, output: str, camera: str, t_publish_ns: int, now_wall_ns: int) -> None:
        self.forwarded.labels(camera, output).inc()
        if t_publish_ns:
            seconds = max(0.0, (now_wall_ns - t_publish_ns) / 1e9)
            self.write_latency.labels(output).observe(seconds)
            self.latency.setdefault(output, LatencyWindow(8192)).add(seconds * 1e3)


class GatewayHealth:
    """/healthz: 200 when every output is up and every camera is ready."""

    def __init__(self, outputs: Callable[[], dict[str, str]], cameras: Callable[[], dict[str, str]],
                 alive: Callable[[], bool]):
        self._outputs, self._cameras, self._alive = outputs, cameras, alive

    def check(self) -> HealthReport:
        """`outputs()` maps output -> problem ("" when up); `cameras()` camera -> not-ready reason."""
        down = {k: v for k, v in self._outputs().items() if v}
        not_ready = {k: v for k, v in self._cameras().items() if v}
        alive = self._alive()
        reason = ("; ".join(f"{k}: {v}" for k, v in down.items())
                  or "; ".join(f"{k} not ready: {v}" for k, v in not_ready.items())
                  or ("" if alive else "a subscriber thread stopped"))
        return HealthReport(ready=True, progressing=alive, healthy=not reason, reason=reason)
