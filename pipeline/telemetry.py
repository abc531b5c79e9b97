"""Counters, stage states and recent latencies that every stage reports into.

Bottom layer. Each counter has one writer (the stage or camera it belongs to), so plain
attributes suffice under the GIL; readers (heartbeat, status line, watchdog) take
snapshots and tolerate values that are a few microseconds old.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from pipeline.messages import Job
from pipeline.queues import StageQueue
from pipeline.states import CameraState, Health, StageState, move

log = logging.getLogger(__name__)


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
    last_frame_ns: int = 0
    reconnects: int = 0  # links re-established after a loss (sources that reconnect by themselves)
    parts_announced: int = 0  # part ids received on the trigger input
    parts_missed: int = 0  # announced parts settled without an image (missed_trigger, source_down, shutdown)
    triggers_rejected: int = 0  # malformed trigger messages
    frames_skipped: int = 0  # free-running frames no announced part claimed

    @property
    def down_or_stalled(self) -> bool:
        return self.state in (CameraState.DOWN, CameraState.STALLED)

    def move_to(self, state: CameraState) -> bool:
        """Move to `state` (a legal move, see pipeline.states); True if the state changed."""
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
        self.latency = LatencyWindow()
        self.errors: list[str] = []
        self.published_dropped = 0
        self.crashed = threading.Event()
        # Called by the publish thread after each verdict is sent (e.g. metrics); must be quick.
        self.verdict_listeners: list[Callable[[Job], None]] = []

    def verdict_published(self, job: Job) -> None:
        for listener in tuple(self.verdict_listeners):
            try:
                listener(job)
            except Exception:  # noqa: BLE001 - an observer must never stop the publisher
                self.verdict_listeners.remove(listener)
                log.exception("verdict listener %r failed and was removed", listener)

    def stage(self, name: str) -> StageStats:
        return self.stages.setdefault(name, StageStats(name))

    def set_health(self, health: Health) -> None:
        """Move the stored health (STARTING, OK, STOPPING, ERROR; see pipeline.states)."""
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
        if self.health in (Health.ERROR, Health.STOPPING, Health.STARTING):
            return self.health
        bad_camera = any(c.down_or_stalled for c in self.cameras.values())
        failing = any(s.failing for s in self.stages.values())
        return Health.DEGRADED if bad_camera or failing else Health.OK

    def fps(self) -> float:
        elapsed_s = (time.monotonic_ns() - self.started_ns) / 1e9
        total = sum(c.verdicts_published for c in self.cameras.values())
        return total / elapsed_s if elapsed_s > 0 else 0.0

    def snapshot(self) -> dict[str, Any]:
        """The heartbeat body (see docs/PROTOCOL.md)."""
        return {
            "health": self.current_health().value,
            "uptime_s": round((time.monotonic_ns() - self.started_ns) / 1e9, 3),
            "backend": self.backend,
            "backend_choice": self.backend_choice,
            "cameras": {
                c.camera_id: {"state": c.state.value, "frames_captured": c.frames_captured,
                              "verdicts_published": c.verdicts_published, "last_seq": c.last_seq,
                              "reconnects": c.reconnects, "parts_announced": c.parts_announced,
                              "parts_missed": c.parts_missed, "triggers_rejected": c.triggers_rejected,
                              "frames_skipped": c.frames_skipped}
                for c in self.cameras.values()
            },
            "counts": dict(self.counts),
            "queues": {name: q.snapshot() for name, q in self.queues.items()},
            "stages": {s.name: {"state": s.state.value, "errors": s.errors, "processed": s.processed}
                       for s in self.stages.values()},
            "publisher_dropped": self.published_dropped,
            "errors": list(self.errors[-10:]),
        }
