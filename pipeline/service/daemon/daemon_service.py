"""The daemon around one pipeline: what `pipeline run` adds when it runs as a service.

Owns the order of the service lifecycle and nothing of the pipeline itself:
- `open()` before the model loads: binds the HTTP endpoint (so /healthz says
  "starting" meanwhile, and a busy port fails fast) and tells systemd STATUS=loading;
- `attach(handle)` once the parts are built (the run driver's `RunHandle`): metrics
  become a verdict sink, health starts reading telemetry, the reloader learns where the
  rules go;
- `tick()` from the runner's main-thread loop (every ~0.1 s): READY=1 once ready,
  WATCHDOG=1 at half the systemd interval while every stage progresses (a stuck stage,
  or a stuck main loop, stops the pings), STATUS= with fps and latency every second,
  and a pending SIGHUP reload (the signal handler only sets a flag);
- `stopping()` then `close()` around the pipeline's shutdown.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from pipeline.composition.driver import RunHandle
from pipeline.config.models import PipelineConfig
from pipeline.service.daemon.health import HealthMonitor
from pipeline.service.daemon.http_endpoint import HttpEndpoint
from pipeline.service.daemon.limits import ensure_descriptors
from pipeline.service.daemon.metrics import PipelineMetrics
from pipeline.service.daemon.notify import SdNotifier
from pipeline.service.daemon.reload import RuleReloader

log = logging.getLogger(__name__)

STATUS_INTERVAL_S = 1.0


class DaemonService:
    def __init__(self, config: PipelineConfig, notifier: SdNotifier | None = None, config_path: Path | None = None):
        self.config = config
        self.config_path = config_path
        self.notifier = notifier or SdNotifier.from_environment()
        self.monitor = HealthMonitor(config.watchdog.stage_stall_s)
        self.metrics: PipelineMetrics | None = None
        self.http: HttpEndpoint | None = None
        self.reloader: RuleReloader | None = None
        self._reload_pending = False  # a plain flag: a signal handler must not take a lock
        self.run: RunHandle | None = None
        self._ready_sent = False
        self._withholding = False
        self._next_ping = self._next_status = 0.0

    def open(self) -> None:
        ensure_descriptors(self.config)  # before any connection can take the last descriptor
        self.notifier.status("loading the model and opening the cameras")
        if self.config.http.enabled:
            self.metrics = PipelineMetrics(self.monitor)
            self.http = HttpEndpoint.from_config(self.config.http, self.metrics.registry, self.monitor)
            self.http.start()

    def attach(self, run: RunHandle) -> None:
        self.run = run
        archive = run.archive
        if self.metrics is not None:
            run.add_sink(self.metrics)
            if archive is not None:
                self.metrics.collector.archive = archive
        if self.config_path is not None:
            self.reloader = RuleReloader(self.config_path, self.config, run.replace_rules, run.class_names,
                                         archive.config_changed if archive is not None else None)
        self.monitor.attach(run.telemetry)

    def request_reload(self) -> None:
        """Safe from a signal handler: the work happens in the next `tick()`."""
        self._reload_pending = True

    def tick(self) -> None:
        report = self.monitor.check()
        now = time.monotonic()
        if report.ready and not self._ready_sent:
            self._ready_sent = True
            self.notifier.ready(self.status_text())
            log.info("ready: model warm, every camera delivering")
        self._watchdog(report, now)
        if now >= self._next_status:
            self._next_status = now + STATUS_INTERVAL_S
            self.notifier.status(self.status_text(report.reason if not report.healthy else ""))
        if self._reload_pending:
            self._reload_pending = False
            self._reload()

    def _watchdog(self, report, now: float) -> None:
        interval = self.notifier.watchdog_interval_s
        if report.progressing:
            if self._withholding:
                log.warning("every stage progresses again: watchdog pings resume")
            self._withholding = False
            if interval is not None and now >= self._next_ping:
                self._next_ping = now + interval
                self.notifier.watchdog()
        elif not self._withholding:
            self._withholding = True
            log.error("withholding watchdog pings (systemd will restart the service): %s", report.reason)

    def _reload(self) -> None:
        if self.reloader is None:
            log.warning("SIGHUP ignored: no config file to reload from")
            return
        log.info("SIGHUP: reloading the rules from %s", self.config_path)
        applied = self.reloader.reload()
        if self.metrics is not None:
            self.metrics.reloads.labels("applied" if applied else "rejected").inc()

    def status_text(self, problem: str = "") -> str:
        if self.run is None:
            return "starting"
        t = self.run.telemetry
        p50, p99 = t.latency.percentiles(50, 99)
        c = t.counts
        text = (f"{t.current_health().value} {t.fps():.1f} fps, p50 {p50:.1f} ms, p99 {p99:.1f} ms, "
                f"PASS {c['PASS']} FAIL {c['FAIL']} NOT_INSPECTED {c['NOT_INSPECTED']} ERROR {c['ERROR']}")
        return f"{text}; {problem}" if problem else text

    def stopping(self) -> None:
        self.notifier.stopping("stopping: draining frames in flight")

    def close(self) -> None:
        if self.http is not None:
            self.http.close()
        self.notifier.close()
