"""Preprocess: source image -> model input tensor in a pooled slot, plus its geometry.

Owns acquiring a `TensorSlot` from the pool for each job (released by the infer stage,
or by `Job.settle`). When no slot frees up within `slot_timeout_s` the frame is shed as
NOT_INSPECTED (`no_buffer`) instead of blocking the cameras. The transform itself is
injected: the CPU `Letterboxer` or the GPU kernel, both `(image, out, bayer) -> Geometry`
(`bayer`: the frame's `BayerPattern` when its image is a raw mosaic, else None).

It takes every job queued (up to `max_batch`) in one wake-up. A host transform is done
when it returns: the frame slot (`Job.frame_slot`) goes back to its pool at once. A
`StreamTransform` (the GPU kernel) only enqueues work on its stream; after the batch,
`flush()` records one fence (a CUDA event) that both slots of every job in it carry:
the infer stream waits on it on the GPU, and whoever releases a slot waits on it first,
so the host never synchronises per frame and no buffer is reused while the GPU still
reads it. A job whose transform raises gets its ERROR verdict alone.
"""

from __future__ import annotations

from typing import Any

from pipeline.core.buffers import SlotPool
from pipeline.core.contracts import StreamTransform, Transform
from pipeline.core.messages import Geometry, Job, Outcome, ReasonCode, TensorSlot
from pipeline.core.queues import StageQueue
from pipeline.core.telemetry import Telemetry
from pipeline.stages.stage import Stage


class PreprocessStage(Stage):
    name = "preprocess"
    max_batch = 16  # what is queued, in one wake-up: one fence per batch on the GPU path

    def __init__(self, transform: Transform, pool: SlotPool, inbox: StageQueue, outbox: StageQueue,
                 telemetry: Telemetry, upstreams: int, slot_timeout_s: float = 0.02):
        super().__init__(inbox, outbox, telemetry, upstreams)
        self.transform = transform
        self.streamed = isinstance(transform, StreamTransform)
        self.pool = pool
        self.slot_timeout_s = slot_timeout_s

    def handle(self, jobs: list[Job]) -> list[Job]:
        started = [self._start(job) for job in jobs]
        try:
            fence = self.transform.flush() if self.streamed else None  # type: ignore[attr-defined]
        except BaseException:
            for _job, slot, _geometry in started:
                if slot is not None:
                    slot.release()
            raise
        return [self._finish(job, slot, geometry, fence) for job, slot, geometry in started]

    def _start(self, job: Job) -> tuple[Job, TensorSlot | None, Geometry | None]:
        slot = self.pool.acquire(self.slot_timeout_s)
        if slot is None:
            return job.settle(Outcome.NOT_INSPECTED, ReasonCode.NO_BUFFER, "no free input buffer", self.name), None, None
        try:
            return job, slot, self.transform(job.frame.image, slot.array, job.frame.bayer)
        except Exception as exc:  # noqa: BLE001 - this frame alone gets its ERROR verdict
            slot.release()
            return self._fail([job], exc)[0], None, None

    def _finish(self, job: Job, slot: TensorSlot | None, geometry: Geometry | None, fence: Any) -> Job:
        if slot is None:
            return job  # settled above
        if fence is None:
            job = job.without_frame_slot()  # a host transform has read the image already
        else:
            slot.fence = fence
            if job.frame_slot is not None:
                job.frame_slot.fence = fence  # released by infer, after its run waited on the upload
        return self.mark(job, tensor=slot, geometry=geometry)
