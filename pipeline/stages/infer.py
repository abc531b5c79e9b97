"""Infer: batches of tensors -> detections in source pixels.

Owns dynamic batching (up to `max_batch` jobs or `max_wait_us` after the first, whichever
comes first; each job keeps its own capture time), skipping jobs already past their
deadline (NOT_INSPECTED `expired`: no point spending the accelerator on a part whose
verdict would be late anyway), releasing input slots once the backend has consumed them,
and decoding the raw output per image, so a malformed output fails only its own frame.
"""

from __future__ import annotations

import time
from typing import Callable

import numpy as np

from pipeline.messages import Detections, Geometry, Job, Outcome, ReasonCode
from pipeline.queues import StageQueue
from pipeline.stages.base import Stage
from pipeline.telemetry import Telemetry

Decoder = Callable[[np.ndarray, Geometry], Detections]  # one image's raw output -> detections


class InferStage(Stage):
    name = "infer"

    def __init__(self, backend, decoder: Decoder, inbox: StageQueue, outbox: StageQueue, telemetry: Telemetry,
                 budget_ms: float, max_batch: int = 1, max_wait_us: int = 0, skip_expired: bool = True):
        super().__init__(inbox, outbox, telemetry)
        self.backend = backend
        self.decoder = decoder
        self.budget_ns = int(budget_ms * 1e6)
        self.max_batch = max_batch
        self.max_wait_s = max_wait_us / 1e6
        self.skip_expired = skip_expired
        self._batch: np.ndarray | None = None  # allocated once, on first use

    def handle(self, jobs: list[Job]) -> list[Job]:
        now = time.monotonic_ns()
        live = [i for i, job in enumerate(jobs) if not self._expired_at(job, now)]
        outputs = self._run([jobs[i] for i in live]) if live else None
        row = {i: k for k, i in enumerate(live)}
        return [self._decoded(job, outputs[row[i]]) if i in row else self._expire(job)  # type: ignore[index]
                for i, job in enumerate(jobs)]

    def _expired_at(self, job: Job, now_ns: int) -> bool:
        return self.skip_expired and now_ns - job.frame.t_capture_ns > self.budget_ns

    def _run(self, jobs: list[Job]) -> np.ndarray:
        try:
            return self.backend.infer(self._stack(jobs))
        finally:
            for job in jobs:  # the backend has consumed (or failed on) the inputs
                job.tensor.release()

    def _stack(self, jobs: list[Job]) -> np.ndarray:
        if len(jobs) == 1:
            return jobs[0].tensor.array[None]  # a view: no copy for batch 1
        first = jobs[0].tensor.array
        if self._batch is None:
            self._batch = np.empty((self.max_batch, *first.shape), first.dtype)
        for i, job in enumerate(jobs):
            self._batch[i] = job.tensor.array
        return self._batch[: len(jobs)]

    def _decoded(self, job: Job, raw: np.ndarray) -> Job:
        try:
            detections = self.decoder(raw[None], job.geometry)
        except ValueError as exc:
            code = getattr(exc, "reason_code", ReasonCode.BAD_OUTPUT)
            self.stats.errors += 1
            return job.settle(Outcome.ERROR, code, f"{type(exc).__name__}: {exc}"[:300], self.name)
        return job.mark(self.name, tensor=None, detections=detections, model_backend=self.backend.name)

    def _expire(self, job: Job) -> Job:
        detail = f"{job.age_ms():.1f} ms old before inference"
        return job.settle(Outcome.NOT_INSPECTED, ReasonCode.EXPIRED, detail, self.name, late=True)
