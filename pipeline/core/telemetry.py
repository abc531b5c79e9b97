"""Counters, stage states and recent latencies that every stage reports into.

Bottom layer. Each counter has one writer (the stage or camera it belongs to), so plain
attributes suffice under the GIL; readers (heartbeat, status line, watchdog) take
snapshots and tolerate values that are a few microseconds old. `Telemetry` is the first
verdict sink of every pipeline: the published counts, per-camera seq and the latency
window (status line, systemd STATUS) come from `PublishedVerdict`, on the publish thread.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pipeline.core.messages import Job, Outcome, PublishedVerdict, ReasonCode
from pipeline.core.queues import StageQueue
from pipeline.core.states import CameraState, Health, StageState, move

__all__ = ["CameraStats", "Health", "LatencyWindow", "StageStats", "Telemetry"]


@dataclass
class StageStats:
    name: str
    state: StageState = StageState.STARTING
    processed: int = 0
    errors: int = 0
    last_progress_ns: int = field(default_factory=time.monotonic_ns)
    busy: bool = False  # True while handling an item: a stuck stage stays busy
    failing: bool = False  # its last attempt failed (e.g. the backend raised): health DEGRADED

    def progressed(self) -> None:
        self.last_progress_ns = time.monotonic_ns()

    def move_to(self, state: StageState) -> None:
        self.state = move(self.state, state)


@dataclass
class CameraStats:
    camera_id: str
    state: CameraState = CameraState.CONNECTING
    frames_captured: int = 0
    verdicts_published: int = 0
    last_seq: int = -1
    last_frame_ns: int = 0  # monotonic exposure time of the newest fresh frame; 0: none yet
    reconnects: int = 0  # links re-established after a loss (sources that reconnect by themselves)
    parts_announced: int = 0  # part ids received on the trigger input
    parts_missed: int = 0  # announced parts settled without an image (missed_trigger, source_down, shutdown)
    triggers_rejected: int = 0  # malformed trigger messages
    frames_skipped: int = 0  # free-running frames no announced part claimed
    frames_stale: int = 0  # frames that came late for their own timestamp: never judged

    @property
    def down_or_stalled(self) -> bool:
        return self.state in (CameraState.DOWN, CameraState.STALLED)

    def move_to(self, state: CameraState) -> bool:
        """Move to `state` (a legal move, see pipeline.core.states); True if the state changed."""
        changed = state is not self.state
        self.state = move(self.state, state)
        return changed


class LatencyWindow:
    """The last `size` end-to-end latencies (ms), for p50/p99 on the status line."""

    def __init__(self, size: int = 2048):
        self._values = np.zeros(size, np.float64)
        self._count = 0
        self._lock = threading.Lock()

    def add(self, ms: float) -> None:
        with self._lock:
            self._values[self._count % len(self._values)] = ms
            self._count += 1

    def percentiles(self, *qs: float) -> tuple[float, ...]:
        with self._lock:
            n = min(self._count, len(self._values))
            if n == 0:
                return tuple(float("nan") for _ in qs)
            return tuple(float(v) for v in np.percentile(self._values[:n], qs))


@dataclass(frozen=True)
class HealthRules:
    """When a camera's recent outcomes make health DEGRADED or ERROR (docs/OPERATIONS.md
    "Health"): the window is its last `window_verdicts` verdicts, none older than
    `window_s` (so health recovers within a few seconds of the line recovering); shares
    apply once it holds `min_verdicts`; `idle_s`: verdicts keep coming, none PASS/FAIL."""

    window_verdicts: int = 50
    window_s: float = 30.0
    min_verdicts: int = 20
    shed_share: float = 0.5  # NOT_INSPECTED
    bad_output_share: float = 0.2  # ERROR bad_output: the model gives NaN/inf or malformed output
    error_share: float = 0.2  # any other ERROR
    idle_s: float = 30.0


def outcome_kind(job: Job) -> str:
    """inspected | shed | bad_output | error: what one verdict says about the line's health."""
    verdict = job.verdict
    if verdict is None or verdict.outcome in (Outcome.PASS, Outcome.FAIL):
        return "inspected"
    if verdict.outcome is Outcome.NOT_INSPECTED:
        return "shed"
    if any(r.code is ReasonCode.BAD_OUTPUT for r in verdict.reasons):
        return "bad_output"
    return "error"


class OutcomeWindow:
    """One camera's verdict kinds over the last `window_s` (the publish thread writes,
    the HTTP and heartbeat threads read, hence the lock)."""

    def __init__(self, size: int = 50) -> None:
        self._events: deque[tuple[int, str]] = deque(maxlen=size)
        self._lock = threading.Lock()
        self.uninspected_since_ns: int | None = None  # first verdict of the current run without PASS/FAIL

    def record(self, kind: str, now_ns: int, window_ns: int) -> None:
        with self._lock:
            self._events.append((now_ns, kind))
            self._prune(now_ns, window_ns)
            if kind == "inspected":
                self.uninspected_since_ns = None
            elif self.uninspected_since_ns is None:
                self.uninspected_since_ns = now_ns

    def counts(self, now_ns: int, window_ns: int) -> Counter[str]:
        with self._lock:
            self._prune(now_ns, window_ns)
            return Counter(kind for _, kind in self._events)

    def _prune(self, now_ns: int, window_ns: int) -> None:
        while self._events and now_ns - self._events[0][0] > window_ns:
            self._events.popleft()


_SHARE_RULES = (("shed", "shed_share", "shedding"), ("bad_output", "bad_output_share", "bad_output"),
                ("error", "error_share", "errors"))


def outcome_problems(camera_id: str, window: OutcomeWindow, rules: HealthRules, now_ns: int) -> tuple[bool, list[str]]:
    """(unhealthy, reasons) from one camera's recent outcomes; unhealthy: nothing inspected for idle_s."""
    window_ns = int(rules.window_s * 1e9)
    counts = window.counts(now_ns, window_ns)
    total = sum(counts.values())
    since = window.uninspected_since_ns
    if total and since is not None and now_ns - since >= rules.idle_s * 1e9:
        return True, [f"not inspecting: {camera_id} has had no PASS or FAIL for {(now_ns - since) / 1e9:.0f} s"]
    if total < rules.min_verdicts:
        return False, []
    reasons = []
    for kind, limit_name, label in _SHARE_RULES:
        share = counts[kind] / total
        if share > getattr(rules, limit_name):  # the health rule's limit by its field name, not a probe
            reasons.append(f"{label}: {camera_id} {share:.0%} of the last {total} verdicts")
    return False, reasons


class Telemetry:
    """Everything the heartbeat, the status line and the watchdog read."""

    def __init__(self, camera_ids: list[str]):
        self.started_ns = time.monotonic_ns()
        self.health = Health.STARTING
        self.backend = ""
        self.backend_choice = ""  # why that backend: "configured", or what `auto` found
        self.stages: dict[str, StageStats] = {}
        self.cameras = {cid: CameraStats(cid) for cid in camera_ids}
        self.queues: dict[str, StageQueue] = {}
        self.counts: Counter[str] = Counter()
        # (size, distinct cameras) -> batches the infer stage ran; written by its thread only (the
        # bench reads it: the proof that dynamic batching gathers across cameras)
        self.batches: Counter[tuple[int, int]] = Counter()
        self.latency = LatencyWindow()
        self.errors: list[str] = []
        self.published_dropped = 0
        self.crashed = threading.Event()
        self.health_rules = HealthRules()
        self.outcomes = {cid: OutcomeWindow(self.health_rules.window_verdicts) for cid in camera_ids}
        self.archive_problem = ""  # set by the archive while it is disabled (e.g. disk full)

    def set_archive_problem(self, problem: str) -> None:
        """The archive's word: "" when it writes, else why it does not (health DEGRADED)."""
        self.archive_problem = problem

    def set_health_rules(self, rules: HealthRules) -> None:
        """Before the first verdict: the windows are sized by the rules."""
        self.health_rules = rules
        self.outcomes = {cid: OutcomeWindow(rules.window_verdicts) for cid in self.cameras}

    def verdict_published(self, published: PublishedVerdict) -> None:
        """The first `VerdictSink` of every pipeline: per-camera counts and seq, outcome
        counts, the latency window (status line, systemd STATUS) and the health windows."""
        job = published.job
        camera = self.cameras[job.frame.camera_id]
        camera.verdicts_published += 1
        camera.last_seq = published.seq
        if job.verdict is not None:  # always set: the publish stage sends only settled jobs
            self.counts[job.verdict.outcome.value] += 1
        self.latency.add(published.latency_ms)
        window = self.outcomes.get(job.frame.camera_id)
        if window is not None:
            window.record(outcome_kind(job), published.t_publish_ns, int(self.health_rules.window_s * 1e9))

    def stage(self, name: str) -> StageStats:
        return self.stages.setdefault(name, StageStats(name))

    def set_health(self, health: Health) -> None:
        """Move the stored health (STARTING, OK, STOPPING, ERROR; see pipeline.core.states)."""
        self.health = move(self.health, health)

    def record_crash(self, stage: str, exc: BaseException) -> None:
        self.stage(stage).move_to(StageState.CRASHED)
        self.errors.append(f"stage {stage} crashed: {type(exc).__name__}: {exc}")
        self.set_health(Health.ERROR)
        self.crashed.set()

    def record_failure(self, stage: str, message: str) -> None:
        """A failure that must stop the pipeline with exit code 1, though no thread crashed."""
        self.errors.append(f"stage {stage}: {message}")
        self.set_health(Health.ERROR)
        self.crashed.set()

    def current_health(self) -> Health:
        return self.health_and_reasons()[0]

    def health_and_reasons(self, now_ns: int | None = None) -> tuple[Health, list[str]]:
        """The one health judgement (heartbeat, /healthz, /metrics, systemd STATUS) and why."""
        if self.health in (Health.ERROR, Health.STOPPING, Health.STARTING):
            return self.health, []
        now_ns = now_ns or time.monotonic_ns()
        unhealthy, reasons = False, []
        bad = [f"{c.camera_id} {c.state.value}" for c in self.cameras.values() if c.down_or_stalled]
        if bad:
            reasons.append("camera " + ", ".join(bad))
        # a camera that never delivered a frame is not known to work: never OK (docs/PROTOCOL.md)
        silent = [c.camera_id for c in self.cameras.values() if c.last_frame_ns == 0 and not c.down_or_stalled]
        if silent:
            reasons.append("camera " + ", ".join(silent) + " never delivered")
        reasons += [f"stage {s.name} failing" for s in self.stages.values() if s.failing]
        for cid, window in self.outcomes.items():
            idle, found = outcome_problems(cid, window, self.health_rules, now_ns)
            unhealthy, reasons = unhealthy or idle, reasons + found
        if self.archive_problem:
            reasons.append(f"archive disabled: {self.archive_problem}")
        if unhealthy:
            return Health.ERROR, reasons
        return (Health.DEGRADED if reasons else Health.OK), reasons

    def fps(self) -> float:
        elapsed_s = (time.monotonic_ns() - self.started_ns) / 1e9
        total = sum(c.verdicts_published for c in self.cameras.values())
        return total / elapsed_s if elapsed_s > 0 else 0.0

    def snapshot(self) -> dict[str, Any]:
        """The heartbeat body (see docs/PROTOCOL.md)."""
        health, reasons = self.health_and_reasons()
        return {
            "health": health.value,
            "health_reasons": reasons,
            "uptime_s": round((time.monotonic_ns() - self.started_ns) / 1e9, 3),
            "backend": self.backend,
            "backend_choice": self.backend_choice,
            "cameras": {
                c.camera_id: {"state": c.state.value, "frames_captured": c.frames_captured,
                              "verdicts_published": c.verdicts_published, "last_seq": c.last_seq,
                              "reconnects": c.reconnects, "parts_announced": c.parts_announced,
                              "parts_missed": c.parts_missed, "triggers_rejected": c.triggers_rejected,
                              "frames_skipped": c.frames_skipped, "frames_stale": c.frames_stale,
                              "last_frame_age_s": _age_s(c.last_frame_ns)}
                for c in self.cameras.values()
            },
            "counts": dict(self.counts),
            "queues": {name: q.snapshot() for name, q in self.queues.items()},
            "stages": {s.name: {"state": s.state.value, "errors": s.errors, "processed": s.processed}
                       for s in self.stages.values()},
            "publisher_dropped": self.published_dropped,
            "errors": list(self.errors[-10:]),
        }


def _age_s(t_ns: int) -> float | None:
    """Seconds since `t_ns` (monotonic), 0.1 s steps; None for 0 (never)."""
    return round((time.monotonic_ns() - t_ns) / 1e9, 1) if t_ns else None
