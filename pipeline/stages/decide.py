"""Decide: the model's raw output -> detections -> verdict, then the deadline.

Owns decoding each batch's raw output rows (`Job.raw`, handed on by the infer stage) in
one call per inferred batch (`Decoder.decode_batch`), after waiting for an enqueued
batch's output to land (`RawBatch.wait`), in which a malformed output fails
only its own frame (ERROR `bad_output`, stage `decide`), and giving the rows' buffer
back once decoded, so the backend may write its next output there; decoding here lets
the GPU run the next batch meanwhile. Then applying the rule book, then the late policy
(pipeline.core.deadline) to a verdict ready after `budget_ms` from capture; the publish
stage applies the same policy again at the send, so time spent after this stage is
counted too. The rule book can be swapped at run time (`replace_rules`) without stopping
the stage: the reference is replaced atomically and the next job uses the new rules.
"""

from __future__ import annotations

import time

from pipeline.config.models import LatePolicy
from pipeline.core.contracts import Decoder
from pipeline.core.deadline import late_verdict
from pipeline.core.errors import reason_of
from pipeline.core.messages import Detections, Job, Outcome, ReasonCode, Verdict
from pipeline.core.queues import StageQueue
from pipeline.core.telemetry import Telemetry
from pipeline.parts.rules import RuleBook
from pipeline.stages.stage import Stage


class DecideStage(Stage):
    name = "decide"
    max_batch = 64  # whatever infer handed on (a whole batch) in one wake-up

    def __init__(self, decoder: Decoder, rules: RuleBook, mm_per_px: dict[str, float | None], inbox: StageQueue,
                 outbox: StageQueue, telemetry: Telemetry, budget_ms: float, late_policy: LatePolicy):
        super().__init__(inbox, outbox, telemetry)
        self.decoder = decoder
        self.rules = rules
        self.mm_per_px = mm_per_px
        self.budget_ns = int(budget_ms * 1e6)
        self.budget_ms = budget_ms
        self.late_policy = late_policy

    def replace_rules(self, rules: RuleBook) -> None:
        self.rules = rules

    def handle(self, jobs: list[Job]) -> list[Job]:
        decoded = self._decoded(jobs)
        rules, mm_per_px = self.rules, self.mm_per_px  # one rule book per batch, even if replaced meanwhile
        verdicts = [None if job.settled else rules.judge(job.detections, mm_per_px.get(job.frame.camera_id))
                    for job in decoded]
        now = time.monotonic_ns()  # the batch's verdicts are ready, and handed on, together
        return [job if verdict is None else self._on_time(job, verdict, now) for job, verdict in zip(decoded, verdicts)]

    def _decoded(self, jobs: list[Job]) -> list[Job]:
        """`jobs` with their raw rows decoded, one call per inferred batch among them."""
        groups: dict[int, list[int]] = {}
        for i, job in enumerate(jobs):
            if job.raw is not None:
                groups.setdefault(id(job.raw.batch), []).append(i)
        if not groups:
            return jobs
        decoded = list(jobs)
        for positions in groups.values():
            for i, job in zip(positions, self._decode_batch([jobs[i] for i in positions])):
                decoded[i] = job
        return decoded

    def _decode_batch(self, jobs: list[Job]) -> list[Job]:
        rows = [job.raw for job in jobs if job.raw is not None]
        indices = [row.index for row in rows]
        batch = rows[0].batch
        try:
            batch.wait()  # an enqueued batch: here the GPU's output lands (the driver waits, not the interpreter)
            prefix = indices == list(range(len(rows)))
            raw = batch.array[: len(rows)] if prefix else batch.array[indices]  # a prefix is not copied
            results: list[Detections | Exception] = self.decoder.decode_batch(raw, [job.geometry for job in jobs])
        except ValueError as exc:  # the whole output is unreadable (e.g. its shape): every image fails
            results = [exc] * len(jobs)
        finally:
            for row in rows:  # decoded (or failed): the backend may write its next output there
                row.release()
        return [self._bad_output(job, result) if isinstance(result, Exception) else job.evolve(detections=result, raw=None)
                for job, result in zip(jobs, results)]

    def _bad_output(self, job: Job, exc: Exception) -> Job:
        code = reason_of(exc, default=ReasonCode.BAD_OUTPUT)  # a decoder's error: the output's fault
        self.stats.errors += 1
        return job.settle(Outcome.ERROR, code, f"{type(exc).__name__}: {exc}"[:300], self.name)

    def _on_time(self, job: Job, verdict: Verdict, now_ns: int) -> Job:
        age_ns = now_ns - job.frame.t_capture_ns
        if age_ns > self.budget_ns:
            verdict = late_verdict(verdict, age_ns / 1e6, self.budget_ms, self.late_policy)
        return self.mark(job, now_ns, verdict=verdict)
