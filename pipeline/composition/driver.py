"""The one run driver: build a pipeline from a config, start it, run it until a stop
condition, stop it in order. `pipeline run`, `bench`, `eval` and `soak` all run through it.

Owns the run's lifecycle, and only that: what differs between the entry points is said
up front, as explicit `Substitutions` (sources instead of the configured cameras', a
backend instead of the configured model, an archive instead of the configured one, extra
verdict sinks, sinks that read the image after publish), a frame limit, and an `Until` (a duration, a signal); nothing reaches
into the built parts. Stop conditions, checked every tick (`TICK_S`):
  * SIGNAL: `Until.signal()` says stop (SIGINT/SIGTERM, a soak's own stop);
  * CRASHED: a stage crashed (health ERROR; `stop` then routes around it);
  * ENDED: every capture ended (its frame limit, or a finite source's end);
  * DURATION: `Until.duration_s` passed.
Building runs on a helper thread so that a stop signal during it (model load, engine
build: minutes) returns within a tick, before anything is inspected; the abandoned build
dies with the process. `stop` is the pipeline's bounded shutdown (sources first, frames
in flight drained and published) and returns the exit code.
"""

from __future__ import annotations

import enum
import gc
import logging
import sys
import threading
import time
from dataclasses import dataclass
from typing import Callable, Mapping

import cv2

from pipeline.composition.app import Parts, Pipeline
from pipeline.composition.assembly import build_parts
from pipeline.composition.cpu_affinity import checked_cpus, spans, threads_started_on
from pipeline.config.models import PipelineConfig
from pipeline.core.contracts import EvidenceStore, FrameSource, InferenceBackend, VerdictSink
from pipeline.core.telemetry import Telemetry
from pipeline.parts.rules import RuleBook

log = logging.getLogger(__name__)

TICK_S = 0.1  # how often the stop conditions are checked and `tick` runs
SHUTDOWN_TIMEOUT_S = 4.0  # + socket linger stays within the 5 s promised to systemd
Build = Callable[[PipelineConfig], Parts]


class StopReason(enum.Enum):
    SIGNAL = "signal"
    CRASHED = "crashed"
    ENDED = "ended"
    DURATION = "duration"


def never() -> bool:
    return False


@dataclass(frozen=True)
class Substitutions:
    """What a run uses instead of what its config names; the defaults change nothing."""

    sources: Mapping[str, FrameSource] | None = None  # camera id -> unopened source, for every camera
    backend: InferenceBackend | None = None  # a loaded model instead of `model`
    archive: EvidenceStore | None = None  # a started evidence store instead of the configured archive
    sinks: tuple[VerdictSink, ...] = ()  # observers of every published verdict, after telemetry and archive
    sinks_read_images: bool = False  # a sink reads the frame's image after publish: no frame slots lent

    @property
    def only_sinks(self) -> bool:
        """True when no part is substituted, only sinks added."""
        return self.sources is None and self.backend is None and self.archive is None


@dataclass(frozen=True)
class Until:
    """When `RunDriver.run` returns, besides a crash and the end of every source."""

    duration_s: float | None = None
    signal: Callable[[], bool] = never


@dataclass(frozen=True)
class RunHandle:
    """What the service around a run (the daemon: /metrics, health, rule reload) may use
    of the built pipeline, and only that."""

    telemetry: Telemetry
    class_names: tuple[str, ...]  # the model's, as the rules name them
    archive: EvidenceStore | None  # the failed-part archive, when enabled
    add_sink: Callable[[VerdictSink], None]  # one more observer of every published verdict
    replace_rules: Callable[[RuleBook], None]  # the decide stage's rule book, swapped between batches


class RunDriver:
    def __init__(self, config: PipelineConfig, frames: int | None = None,
                 substitutions: Substitutions = Substitutions(), build: Build | None = None):
        """`frames`: per camera, then its capture ends. `build`: a parts builder used
        instead of `build_parts` (it then gets no substitutions of sources or backend)."""
        if build is not None and not substitutions.only_sinks:
            raise ValueError("a custom build takes no source, backend or archive substitutions")
        self.config = config
        self.frames = frames
        self.substitutions = substitutions
        self._build = build or self._build_substituted
        self._pipeline: Pipeline | None = None
        self._stopped_code: int | None = None
        self.reason: StopReason | None = None  # why the last `run` returned
        self._previous_switch_s: float | None = None  # the interpreter's switch interval before `start`
        self._previous_cv_threads: int | None = None  # OpenCV's worker pool size before `start`
        self._cpus: frozenset[int] | None = None  # runtime.cpus, checked against this machine by `open`

    @property
    def pipeline(self) -> Pipeline:
        """The built pipeline (for reading its telemetry); after `open`."""
        if self._pipeline is None:
            raise RuntimeError("RunDriver.open() has not built a pipeline")
        return self._pipeline

    @property
    def class_names(self) -> tuple[str, ...]:
        """The model's classes, as the rules and the verdicts name them; after `open`."""
        return tuple(self.pipeline.parts.backend.class_names)

    @property
    def handle(self) -> RunHandle:
        """The built pipeline as the service around the run sees it; after `open`."""
        pipeline = self.pipeline
        return RunHandle(pipeline.telemetry, self.class_names, pipeline.parts.archive, pipeline.add_sink,
                         pipeline.decide.replace_rules)

    # ------------------------------------------------------------------ lifecycle
    def open(self, interrupted: Callable[[], bool] = never) -> Pipeline | None:
        """Build the parts and the pipeline; None when `interrupted()` became true first.
        A `runtime.cpus` this machine lacks is a StartupError before anything is built."""
        self._cpus = checked_cpus(self.config.runtime.cpus)
        parts = self._build_interruptibly(interrupted)
        if parts is None:
            return None
        subs = self.substitutions
        parts.lend_frame_slots = parts.lend_frame_slots and not subs.sinks_read_images
        self._pipeline = Pipeline(self.config, parts, max_frames=self.frames, sinks=subs.sinks)
        return self._pipeline

    def add_sink(self, sink: VerdictSink) -> None:
        """A sink that needs the built pipeline (the status line reads its telemetry)."""
        self.pipeline.add_sink(sink)

    def start(self) -> None:
        """Start the stages, under the run's switch interval (`runtime.switch_interval_ms`),
        on its CPUs (`runtime.cpus`) and with OpenCV on the calling thread only."""
        gpu_resident = self.pipeline.parts.backend.accepts_device_input
        interval_ms = self.config.runtime.switch_interval_for(gpu_resident)
        if self._previous_switch_s is None:
            self._previous_switch_s = sys.getswitchinterval()
            self._previous_cv_threads = cv2.getNumThreads()
        sys.setswitchinterval(interval_ms / 1000)
        # The stages are the parallelism: OpenCV's own pool would fight the backend's threads
        # for the cores (2-core demo flat out: 125 -> 224 frames/s with one OpenCV thread).
        cv2.setNumThreads(1)
        # Everything built so far (the model session, the modules, the frame slots) lives as
        # long as the run: out of the collector's sight, a full collection no longer walks
        # it while parts wait (a pass over a start-up's heap takes tens of milliseconds).
        gc.collect()
        gc.freeze()
        log.info("interpreter switch interval %g ms (runtime.switch_interval_ms)", interval_ms)
        if self._cpus is not None:
            log.info("capture and stage threads on CPU %s (runtime.cpus)", spans(self._cpus))
        with threads_started_on(self._cpus):
            self.pipeline.start()

    def run(self, until: Until = Until(), tick: Callable[[], None] | None = None) -> StopReason:
        """Wait for the first stop condition, calling `tick` every pass; the reason."""
        self.reason = self._wait(until, tick)
        return self.reason

    def _wait(self, until: Until, tick: Callable[[], None] | None) -> StopReason:
        telemetry = self.pipeline.telemetry
        end = time.monotonic() + until.duration_s if until.duration_s is not None else None
        while True:
            telemetry.crashed.wait(TICK_S)  # a periodic tick that a crash cuts short
            if until.signal():
                return StopReason.SIGNAL
            if tick is not None:
                tick()
            if telemetry.crashed.is_set():
                return StopReason.CRASHED
            if self.pipeline.captures_done:
                return StopReason.ENDED
            if end is not None and time.monotonic() >= end:
                return StopReason.DURATION

    def stop(self, timeout_s: float = SHUTDOWN_TIMEOUT_S) -> int:
        """Stop in order and drain within `timeout_s`; the exit code (0, or 1 after a crash).
        Idempotent: a second call returns the first one's code."""
        if self._stopped_code is None:
            self._stopped_code = self.pipeline.shutdown(timeout_s)
            published = sum(c.verdicts_published for c in self.pipeline.telemetry.cameras.values())
            why = self.reason.value if self.reason is not None else "not run"
            log.info("run stopped (%s): %d verdict(s) published, exit code %d", why, published, self._stopped_code)
            if self._previous_switch_s is not None:  # the process may go on (tests, the bench's next run)
                sys.setswitchinterval(self._previous_switch_s)
            if self._previous_cv_threads is not None:
                cv2.setNumThreads(self._previous_cv_threads)
            gc.unfreeze()
        return self._stopped_code

    # ------------------------------------------------------------------ building
    def _build_substituted(self, config: PipelineConfig) -> Parts:
        subs = self.substitutions
        return build_parts(config, sources=subs.sources, backend=subs.backend, archive=subs.archive)

    def _build_interruptibly(self, interrupted: Callable[[], bool]) -> Parts | None:
        result: dict[str, object] = {}

        def work() -> None:
            try:
                result["parts"] = self._build(self.config)
            except BaseException as exc:  # noqa: BLE001 - re-raised on the caller's thread
                result["error"] = exc

        worker = threading.Thread(target=work, name="start-up", daemon=True)
        worker.start()
        while worker.is_alive():
            worker.join(TICK_S)
            if interrupted():
                return None
        if "error" in result:
            raise result["error"]  # type: ignore[misc]
        return result["parts"]  # type: ignore[return-value]
