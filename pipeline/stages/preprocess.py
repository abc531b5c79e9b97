"""Preprocess: source image -> model input tensor in a pooled slot, plus its geometry.

Owns acquiring a `TensorSlot` from the pool for each job (released by the infer stage,
or by `Job.settle`). When no slot frees up within `slot_timeout_s` the frame is shed as
NOT_INSPECTED (`no_buffer`) instead of blocking the cameras. The transform itself is
injected: the CPU `Letterboxer` or the GPU kernel, both `(image, out) -> Geometry`.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from pipeline.buffers import SlotPool
from pipeline.messages import Geometry, Job, Outcome, ReasonCode
from pipeline.queues import StageQueue
from pipeline.stages.base import Stage
from pipeline.telemetry import Telemetry

Transform = Callable[[np.ndarray, object], Geometry]


class PreprocessStage(Stage):
    name = "preprocess"

    def __init__(self, transform: Transform, pool: SlotPool, inbox: StageQueue, outbox: StageQueue,
                 telemetry: Telemetry, upstreams: int, slot_timeout_s: float = 0.02):
        super().__init__(inbox, outbox, telemetry, upstreams)
        self.transform = transform
        self.pool = pool
        self.slot_timeout_s = slot_timeout_s

    def handle(self, jobs: list[Job]) -> list[Job]:
        return [self._one(job) for job in jobs]

    def _one(self, job: Job) -> Job:
        slot = self.pool.acquire(self.slot_timeout_s)
        if slot is None:
            return job.settle(Outcome.NOT_INSPECTED, ReasonCode.NO_BUFFER, "no free input buffer", self.name)
        try:
            geometry = self.transform(job.frame.image, slot.array)
        except BaseException:
            slot.release()
            raise
        return job.mark(self.name, tensor=slot, geometry=geometry)
