"""Infer: batches of tensors -> the model's raw output rows, one per job (decide decodes them).

Owns dynamic batching, deadline-aware: it takes what is queued (up to `max_batch`) and
waits for more only while the oldest frame in hand can still make its budget, i.e. until
`t_capture + budget_ms - (the measured time of a batch one larger) - DOWNSTREAM_MARGIN`,
and never more than `max_wait_us` after the first frame. Under load the queue holds
enough for full batches at once; when it is quiet a frame waits at most `max_wait_us`
and never so long that waiting itself makes it late. Each job keeps its own capture
time. Also owns skipping jobs already past their
deadline (NOT_INSPECTED `expired`: no point spending the accelerator on a part whose
verdict would be late anyway), releasing input and frame slots once the backend has consumed them (a
`StreamOrdered` backend is handed the slots' fences and makes its own stream wait on
them, so the host never waits for the upload; with any other backend the host waits on
each fence first),
and handing each job its row of the batch's raw output (`Job.raw`, a `RawBatch` row).
Decoding is the decide stage's, so the GPU runs the next batch while the host decodes
the last: a `LendsOutput` backend lends the buffer its output is in (from its ring of
host output buffers) and decide gives it back once decoded; with every buffer still
out, the backend's next run waits for one. Any other backend returns a fresh array.
With batches of one (`max_batch: 1`, a lone camera where latency is all), a `RunsAhead`
backend (ONNX Runtime's CUDA provider with CUDA graphs) only enqueues the frame: the
stage hands it on at once with the fence after which its output is there and with its
input and frame slots, which go back after that fence; the decide thread, already
awake, waits on the fence in the driver and takes the output the moment it lands,
instead of waiting to be woken by this thread after the run. The time a run takes is
then the backend's warm-up figure.
A backend behind a network hop (`RemoteBackend`, e.g. Triton) gets the remaining budget
of the batch's oldest part as its request timeout.

Also owns the backend-failure policy (`model.on_backend_error`): a batch whose backend
call raises becomes ERROR verdicts (by the base loop); after `max_consecutive` failed
batches in a row the stage either asks the pipeline to stop with exit code 1 (`exit`)
or keeps going, health DEGRADED, until a batch succeeds again (`continue`).
"""

from __future__ import annotations

import logging
import time
from typing import Protocol, Sequence, runtime_checkable

import numpy as np

from pipeline.config.model_common import BackendErrorPolicy
from pipeline.core.contracts import Fence, LendsOutput, RunsAhead
from pipeline.core.messages import Job, Outcome, RawBatch, ReasonCode
from pipeline.core.queues import StageQueue
from pipeline.core.telemetry import Telemetry
from pipeline.parts.backends.backend_api import RemoteBackend
from pipeline.stages.stage import POLL_S, Stage

log = logging.getLogger(__name__)

DOWNSTREAM_MARGIN_NS = 1_000_000  # decode and judge (decide), publish after the batch: what a wait must leave
SERVICE_EWMA = 0.1  # weight of a new measurement of a batch size's backend time


@runtime_checkable
class ThreadWarmed(Protocol):
    """A backend with per-thread state to build on the thread that will run it (ONNX
    Runtime keeps its CUDA graphs per thread): the infer thread calls this first."""

    def warmup_thread(self) -> None: ...


@runtime_checkable
class StreamOrdered(Protocol):
    """A backend that orders its work after fences (CUDA events) on its own stream, and
    whose `infer_tensors` returns only once the host has waited for that stream: the
    fences it waited on have then passed."""

    def wait_for(self, fences: Sequence[Fence]) -> None: ...


class InferStage(Stage):
    name = "infer"

    def __init__(self, backend, inbox: StageQueue, outbox: StageQueue, telemetry: Telemetry,
                 budget_ms: float, max_batch: int = 1, max_wait_us: int = 0, skip_expired: bool = True,
                 on_backend_error: BackendErrorPolicy = BackendErrorPolicy()):
        super().__init__(inbox, outbox, telemetry)
        self.backend = backend
        self.budget_ns = int(budget_ms * 1e6)
        self.max_batch = max_batch
        self.max_wait_s = max_wait_us / 1e6
        self.skip_expired = skip_expired
        self.error_policy = on_backend_error
        self.failed_in_row = 0  # backend calls that raised since the last one that worked
        self.stream_ordered = isinstance(backend, StreamOrdered)
        self.remote = isinstance(backend, RemoteBackend)  # asked once: a Protocol isinstance costs ~10 us
        self.lends = isinstance(backend, LendsOutput)
        # Run ahead for batches of one only: with batching, the frames that arrive while a
        # batch runs make the next one, so it gains nothing, and measured on the H200 it
        # cost (8 cameras @ 125: p99 11.2 against 7.8 ms, docs/BENCHMARKS.md).
        self.ahead = self.lends and isinstance(backend, RunsAhead) and not self.remote and max_batch == 1
        self.service_ns = [0.0] * (max_batch + 2)  # EWMA backend time per batch size; 0: not seen yet

    def prepare(self) -> None:
        if isinstance(self.backend, ThreadWarmed):
            self.backend.warmup_thread()
        if self.ahead:  # a run only enqueues: plan with what a whole run took at warm-up
            for n in range(1, self.max_batch + 1):
                self.service_ns[n] = float(self.backend.run_time_ns(n))

    def collect(self) -> list:
        return self.inbox.get_batch(self.max_batch, self.max_wait_s, POLL_S, self._wait_until)

    def _wait_until(self, batch: list) -> float:
        """The last instant (time.monotonic) worth waiting for one more frame."""
        captured = [item.frame.t_capture_ns for item in batch if isinstance(item, Job) and not item.settled]
        if not captured:
            return 0.0  # nothing to wait for: hand on what is in hand
        service = self.service_ns[min(len(batch) + 1, self.max_batch)] or max(self.service_ns)
        return (min(captured) + self.budget_ns - service - DOWNSTREAM_MARGIN_NS) / 1e9

    def handle(self, jobs: list[Job]) -> list[Job]:
        self.telemetry.batches[len(jobs), len({job.frame.camera_id for job in jobs})] += 1
        now = time.monotonic_ns()
        expired = [self._expired_at(job, now) for job in jobs]
        live = [job for job, gone in zip(jobs, expired) if not gone]
        inferred = iter(self._handed_on(live, *self._run(live)) if live else ())
        return [self._expire(job) if gone else next(inferred) for job, gone in zip(jobs, expired)]

    def _expired_at(self, job: Job, now_ns: int) -> bool:
        return self.skip_expired and now_ns - job.frame.t_capture_ns > self.budget_ns

    def _run(self, jobs: list[Job]) -> tuple[np.ndarray, Fence | None]:
        """The batch's raw output, and the fence after which it is there (None: it is)."""
        started = time.monotonic_ns()
        done: Fence | None = None
        try:
            fences = self._order_after_uploads(jobs)
            if self.ahead:
                output, done = self.backend.start_tensors([job.tensor.array for job in jobs])
            else:
                output = self._infer(jobs)
            if done is None:
                for fence in fences:
                    # The run waited on them and is over: releasing the slots below must not
                    # ask the GPU again (a wait gives up the interpreter lock, and taking it
                    # back costs up to a switch interval while the other threads contend).
                    fence.passed()
        except Exception as exc:
            self._backend_failed(exc)
            raise  # the base loop settles exactly these jobs as ERROR
        finally:
            if done is None:  # the backend has consumed (or failed on) the inputs
                for job in jobs:
                    job.tensor.release()
                    if job.frame_slot is not None:
                        job.frame_slot.release()
        if done is None:  # an enqueued batch's time is not known here: warm-up's figure stands
            n = len(jobs)
            seen = self.service_ns[n]
            took = time.monotonic_ns() - started
            self.service_ns[n] = took if not seen else seen + SERVICE_EWMA * (took - seen)
        if self.failed_in_row:
            log.warning("inference backend recovered after %d failed batch(es)", self.failed_in_row)
            self.failed_in_row, self.stats.failing = 0, False
        return output, done

    def _backend_failed(self, exc: Exception) -> None:
        self.failed_in_row += 1
        self.stats.failing = True
        if self.failed_in_row != self.error_policy.max_consecutive:
            return
        what = f"inference backend failed {self.failed_in_row} batches in a row (last: {type(exc).__name__}: {exc})"[:300]
        if self.error_policy.action == "exit":
            log.error("%s; stopping (model.on_backend_error.action: exit)", what)
            self.telemetry.record_failure(self.name, what)
        else:
            log.error("%s; going on (model.on_backend_error.action: continue)", what)

    def _order_after_uploads(self, jobs: list[Job]) -> list[Fence]:
        """The batch's distinct fences, each waited on (by the GPU when it can)."""
        fences: list[Fence] = list({id(f): f for f in (job.tensor.fence for job in jobs) if f is not None}.values())
        if fences and self.stream_ordered:
            self.backend.wait_for(fences)  # the GPU waits, not the host
        else:
            for fence in fences:
                fence.synchronize()
        return fences

    def _infer(self, jobs: list[Job]) -> np.ndarray:
        if self.remote:
            # A network hop: the request may take only what is left of the oldest part's budget.
            oldest_ns = min(job.frame.t_capture_ns for job in jobs)
            left_s = (oldest_ns + self.budget_ns - time.monotonic_ns()) / 1e9
            return self.backend.infer_tensors_within([job.tensor.array for job in jobs], left_s)
        # The backend takes the slots as they are: host arrays, or device buffers the GPU
        # kernel wrote, which then never come back to the host (InferenceBackend contract).
        return self.backend.infer_tensors([job.tensor.array for job in jobs])

    def _handed_on(self, jobs: list[Job], raw: np.ndarray, done: Fence | None) -> list[Job]:
        """Each job with its row of the batch's output, the whole batch handed on at once;
        an enqueued batch (`done` set) takes its jobs' slots along, to go back after `done`."""
        held = [] if done is None else [slot for job in jobs for slot in (job.tensor, job.frame_slot) if slot is not None]
        for slot in held:
            slot.fence = done  # after it, the stream has also passed the preprocess fences it waited on
        batch = RawBatch(raw, len(jobs), self.backend.lend_output() if self.lends else None, done, held)
        backend, now = self.backend.name, time.monotonic_ns()
        return [self.mark(job, now, tensor=None, frame_slot=None, raw=row, model_backend=backend,
                          frame=job.frame if job.frame_slot is None else job.frame.without_image())
                for job, row in zip(jobs, batch.rows())]

    def _expire(self, job: Job) -> Job:
        detail = f"{job.age_ms():.1f} ms old before inference"
        return job.settle(Outcome.NOT_INSPECTED, ReasonCode.EXPIRED, detail, self.name, late=True)
