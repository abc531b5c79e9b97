"""Readiness and health: the one judgement that READY=1, the watchdog pings and
/healthz all share, so the three can never disagree.

Owns the rules:
- ready: the model is loaded and warmed up (the runner says so once the parts are
  built) and every camera has delivered at least one frame. Once ready, stays ready.
- progressing: no running stage has gone `stage_stall_s` without progress. Every stage
  loop marks progress each time it comes round (idle or not), so only a stage stuck
  inside one call (a hung driver, a wedged inference) falls behind. A crashed stage is
  not progressing either. This alone decides the systemd watchdog pings.
- healthy: ready, progressing, and telemetry health OK (no camera down or stalled, no
  outcome rule broken: `Telemetry.health_and_reasons`, not stopping). /healthz answers
  200 only then, else 503 with the reasons.
What crosses the boundary: telemetry is read (never written); a `HealthReport` out.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from pipeline.core.states import Health, StageState
from pipeline.core.telemetry import Telemetry


@dataclass(frozen=True)
class HealthReport:
    ready: bool
    progressing: bool
    healthy: bool
    reason: str  # why not healthy; "" when healthy


class HealthMonitor:
    def __init__(self, stage_stall_s: float):
        self.stage_stall_ns = int(stage_stall_s * 1e9)
        self.telemetry: Telemetry | None = None
        self.model_ready = False
        self._ready = False

    def attach(self, telemetry: Telemetry, model_ready: bool = True) -> None:
        """Called once the parts are built: the model is loaded and warmed up."""
        self.telemetry = telemetry
        self.model_ready = model_ready

    def check(self, now_ns: int | None = None) -> HealthReport:
        t = self.telemetry
        if t is None or not self.model_ready:
            return HealthReport(False, True, False, "starting: loading the model and opening the cameras")
        now_ns = now_ns or time.monotonic_ns()
        stuck = self.stuck_stages(now_ns)
        progressing = not stuck and not t.crashed.is_set()
        ready = self._is_ready(t)
        return HealthReport(ready, progressing, ready and progressing and t.current_health() is Health.OK,
                            self._reason(t, ready, stuck))

    def stuck_stages(self, now_ns: int) -> list[str]:
        """'<stage> (no progress for X s)' for each running stage past the stall limit."""
        assert self.telemetry is not None
        return [f"{s.name} (no progress for {(now_ns - s.last_progress_ns) / 1e9:.1f} s{', busy' if s.busy else ''})"
                for s in list(self.telemetry.stages.values())
                if s.state is StageState.RUNNING and now_ns - s.last_progress_ns > self.stage_stall_ns]

    def _is_ready(self, t: Telemetry) -> bool:
        if not self._ready:
            self._ready = all(c.frames_captured > 0 for c in t.cameras.values())
        return self._ready

    @staticmethod
    def waiting_for(t: Telemetry) -> list[str]:
        return [c.camera_id for c in t.cameras.values() if c.frames_captured == 0]

    def _reason(self, t: Telemetry, ready: bool, stuck: list[str]) -> str:
        health, reasons = t.health_and_reasons()
        if health is Health.ERROR:
            if t.health is not Health.ERROR and reasons:  # judged from outcomes, nothing crashed
                return "error: " + "; ".join(reasons)
            return "error: " + (t.errors[-1] if t.errors else "a stage crashed")
        if stuck:
            return "stuck: " + ", ".join(stuck)
        if health is Health.STOPPING:
            return "stopping"
        if not ready:
            return "starting: waiting for a first frame from " + ", ".join(self.waiting_for(t))
        if health is Health.DEGRADED:
            return "degraded: " + "; ".join(reasons)
        return "" if health is Health.OK else f"health {health.value}"
