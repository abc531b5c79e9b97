"""Composition root: builds the stages from the config, wires the queues, starts
downstream first and stops upstream first.

Owns the pipeline's lifecycle and the shutdown guarantee: sources stop first, frames in
flight drain and get their verdicts, and a stage that crashed or hangs is routed around
(its jobs are settled as ERROR and published), all within a bounded time.
The parts are built by `build_parts` (which opens files, sockets and devices) and handed
to `Pipeline`, so tests can assemble a pipeline from their own real parts.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import zmq

from pipeline.config.models import LatePolicy, PipelineConfig
from pipeline.core.buffers import Allocator, FramePool, HostSlotPool, SlotPool
from pipeline.core.contracts import Decoder, EvidenceStore, FrameSource, InferenceBackend, Publisher, Transform, VerdictSink
from pipeline.core.deadline import Deadline
from pipeline.core.errors import PipelineError
from pipeline.core.messages import EndOfStream, Job, Outcome, ReasonCode
from pipeline.core.queues import StageQueue
from pipeline.core.states import Health, StageState
from pipeline.core.telemetry import HealthRules, Telemetry
from pipeline.parts.archive import FailedPartArchive
from pipeline.parts.publishing.sinks import VerdictSinks
from pipeline.parts.rules import RuleBook
from pipeline.parts.sources.pixel_formats import slot_shape
from pipeline.parts.sources.triggers import TriggerInbox
from pipeline.stages.capture import CaptureStage
from pipeline.stages.decide import DecideStage
from pipeline.stages.infer import InferStage
from pipeline.stages.preprocess import PreprocessStage
from pipeline.stages.publish import PublishStage
from pipeline.stages.stage import Stage

log = logging.getLogger(__name__)

PREPARE_TIMEOUT_S = 120.0  # a stage's per-thread warm-up (CUDA graph captures) before cameras start


class StartupError(PipelineError):
    """The pipeline cannot start; the message names what is wrong (exit code 2)."""


@dataclass
class Parts:
    """Everything the pipeline needs from the outside world, already opened."""

    sources: dict[str, FrameSource]
    backend: InferenceBackend
    transform: Transform
    decoder: Decoder
    publisher: Publisher
    context: zmq.Context | None = None
    extra_closers: list[Callable[[], None]] = field(default_factory=list)
    archive: EvidenceStore | None = None  # FailedPartArchive: names its file in the message, then a sink
    slot_pool: SlotPool | None = None  # model-input slots; None: host arrays (see slot_count)
    triggers: dict[str, TriggerInbox] = field(default_factory=dict)  # camera id -> inbox (bound, not started)
    frame_allocator: Allocator | None = None  # frame slots' memory: page-locked on the GPU path; None: np.empty
    # False when something reads the image after inference (the archive, annotation):
    # sources then hand each frame an array of its own, kept as long as the job.
    lend_frame_slots: bool = True
    backend_choice: str = ""  # why this backend ("configured", or what `auto` found); sent in the heartbeat


def slot_count(config: PipelineConfig) -> int:
    """Input slots a pool needs: a full infer queue, a batch in flight, and everything the
    preprocess stage takes in one wake-up (up to a full preprocess queue) being filled."""
    return config.queues.infer.size + config.queues.preprocess.size + 2 * config.model.max_batch + 2


def frame_slot_count(config: PipelineConfig) -> int:
    """Frame slots per camera: one camera may fill the preprocess and infer queues alone,
    plus a batch in inference, one held by the capture stage and one being handed on."""
    return config.queues.preprocess.size + config.queues.infer.size + config.model.max_batch + 2


class Pipeline:
    def __init__(self, config: PipelineConfig, parts: Parts, max_frames: int | None = None,
                 sinks: tuple[VerdictSink, ...] = ()):
        self.config = config
        self.parts = parts
        self.stop_event = threading.Event()
        self.telemetry = Telemetry([c.id for c in config.cameras])
        archive = (parts.archive,) if parts.archive is not None else ()
        self.sinks = VerdictSinks(self.telemetry, *archive, *sinks)  # telemetry first: later sinks read its counts
        self.telemetry.backend = parts.backend.name
        self.telemetry.backend_choice = parts.backend_choice
        self.telemetry.set_health_rules(HealthRules(**config.health.model_dump()))
        if isinstance(parts.archive, FailedPartArchive):  # a full disk shows in health until space returns
            parts.archive.on_change = self.telemetry.set_archive_problem
        self.publish_q = StageQueue("publish", config.queues.publish.size, lossless=True)
        self.queues = self._make_queues()
        self.frame_pools = self._frame_pools()
        self.captures = [self._capture(cam.id, max_frames) for cam in config.cameras]
        self.stages = self._make_stages()

    # ------------------------------------------------------------------ wiring
    def _queue(self, name: str) -> StageQueue:
        q = getattr(self.config.queues, name)  # a config section by its name (queues are named after their consumer)
        return StageQueue(name, q.size, q.overflow, q.block_timeout_ms / 1000, on_shed=self.publish_q.put)

    def _make_queues(self) -> dict[str, StageQueue]:
        queues = {name: self._queue(name) for name in ("preprocess", "infer", "decide")}
        queues["publish"] = self.publish_q
        self.telemetry.queues.update(queues)
        return queues

    def _frame_pools(self) -> dict[str, FramePool]:
        if not self.parts.lend_frame_slots:
            return {}
        count, allocate = frame_slot_count(self.config), self.parts.frame_allocator
        pinned = allocate is not None  # page-locked: a Bayer camera's slots hold the raw mosaic for the kernel
        return {cam.id: FramePool(slot_shape(cam, raw_bayer=pinned), count, allocate or np.empty, pinned)
                for cam in self.config.cameras}

    def _capture(self, camera_id: str, max_frames: int | None) -> CaptureStage:
        cam = next(c for c in self.config.cameras if c.id == camera_id)
        return CaptureStage(camera_id, self.parts.sources[camera_id], self.queues["preprocess"], self.telemetry,
                            self.stop_event, max_frames, cam.stall_timeout_s,
                            self.parts.triggers.get(camera_id), cam.trigger_timeout_s,
                            frame_pool=self.frame_pools.get(camera_id))

    def _make_stages(self) -> list[Stage]:
        cfg, q, parts, t = self.config, self.queues, self.parts, self.telemetry
        backend = parts.backend
        w, h = backend.input_size
        pool = parts.slot_pool or HostSlotPool((3, h, w), backend.input_dtype, slot_count(cfg))
        rules = RuleBook(cfg.rules, backend.class_names)
        mm = {c.id: c.mm_per_px for c in cfg.cameras}
        return [
            PreprocessStage(parts.transform, pool, q["preprocess"], q["infer"], t, upstreams=len(self.captures)),
            InferStage(backend, q["infer"], q["decide"], t, cfg.budget_ms, cfg.model.max_batch,
                       cfg.model.max_wait_us, skip_expired=cfg.late_policy is not LatePolicy.REPORT,
                       on_backend_error=cfg.model.on_backend_error),
            DecideStage(parts.decoder, rules, mm, q["decide"], q["publish"], t, cfg.budget_ms, cfg.late_policy),
            PublishStage(parts.publisher, q["publish"], t, cfg.publisher.heartbeat_ms, self.sinks,
                         archive=parts.archive, deadline=Deadline(cfg.budget_ms, cfg.late_policy)),
        ]

    def add_sink(self, sink: VerdictSink) -> None:
        """One more observer of every published verdict (e.g. /metrics, the status line)."""
        self.sinks.add(sink)

    @property
    def decide(self) -> DecideStage:
        return next(s for s in self.stages if isinstance(s, DecideStage))

    # ------------------------------------------------------------------ lifecycle
    def start(self, prepare_timeout_s: float = PREPARE_TIMEOUT_S) -> None:
        for stage in reversed(self.stages):  # downstream first: nothing produced before its consumer runs
            stage.start()
        deadline = time.monotonic() + prepare_timeout_s
        for stage in self.stages:  # e.g. CUDA graphs captured on the infer thread, before any frame
            if not stage.ready.wait(max(0.0, deadline - time.monotonic())):
                log.warning("stage %s not prepared after %g s; starting the cameras anyway", stage.name,
                            prepare_timeout_s)
        if self.telemetry.health is Health.STARTING:  # a stage may have crashed already
            self.telemetry.set_health(Health.OK)
        for capture in self.captures:
            capture.start()

    @property
    def captures_done(self) -> bool:
        return not any(c.thread.is_alive() for c in self.captures)

    @property
    def finished(self) -> bool:
        return not self.stages[-1].thread.is_alive()

    def request_stop(self) -> None:
        self.stop_event.set()

    def shutdown(self, timeout_s: float = 4.0) -> int:
        """Stop sources, drain, close. Returns the exit code (0 clean, 1 after a crash)."""
        deadline = time.monotonic() + timeout_s
        if self.telemetry.health is not Health.ERROR:
            self.telemetry.set_health(Health.STOPPING)
        self.stop_event.set()
        for capture in self.captures:
            capture.thread.join(max(0.0, deadline - time.monotonic()))
        self._drain_stages(deadline)
        self._close()
        crashed = self.telemetry.crashed.is_set()
        if crashed:
            log.error("pipeline stopped after a crash: %s", "; ".join(self.telemetry.errors))
        return 1 if crashed else 0

    def _drain_stages(self, deadline: float) -> None:
        # Give each stage until the deadline to finish on its own; route around any that
        # crashed or hangs so the jobs behind it still get their verdicts.
        for i, stage in enumerate(self.stages):
            stage.thread.join(max(0.0, deadline - time.monotonic()) if i < len(self.stages) - 1 else
                              max(0.0, deadline - time.monotonic() + 0.5))
            if stage.thread.is_alive() or stage.stats.state is StageState.CRASHED:
                self._route_around(stage)

    def _route_around(self, stage: Stage) -> None:
        log.error("stage %s did not finish (%s); settling its jobs as ERROR", stage.name, stage.stats.state)
        held = stage.abandon()  # the jobs it holds, not only those queued for it
        if stage is self.stages[-1]:
            left = held + [i for i in stage.inbox.drain() if isinstance(i, Job)]
            log.error("publisher unavailable: %d verdict(s) could not be published", len(left))
            return
        for item in [*held, *stage.inbox.drain()]:
            if isinstance(item, Job):
                settled = item if item.settled else item.settle(
                    Outcome.ERROR, ReasonCode.SHUTDOWN, f"stage {stage.name} {stage.stats.state}", stage.name)
                self.publish_q.put(settled)
        if stage.outbox is not None:
            stage.outbox.put(EndOfStream(stage.name))

    def _close(self) -> None:
        for closer in (self.parts.publisher.close, self.parts.backend.close, *self.parts.extra_closers):
            try:
                closer()
            except Exception:  # noqa: BLE001 - keep closing the rest
                log.exception("error while closing")
        if self.parts.context is not None:
            self.parts.context.term()
