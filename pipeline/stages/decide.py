"""Decide: detections -> verdict, then the deadline.

Owns applying the rule book, then the late policy (pipeline.core.deadline) to a verdict ready
after `budget_ms` from capture; the publish stage applies the same policy again at the
send, so time spent after this stage is counted too. The rule book can be
swapped at run time (`replace_rules`) without stopping the stage: the reference is
replaced atomically and the next job uses the new rules.
"""

from __future__ import annotations

import time

from pipeline.config.models import LatePolicy
from pipeline.core.deadline import late_verdict
from pipeline.core.messages import Job, Verdict
from pipeline.core.queues import StageQueue
from pipeline.core.telemetry import Telemetry
from pipeline.parts.rules import RuleBook
from pipeline.stages.stage import Stage


class DecideStage(Stage):
    name = "decide"
    max_batch = 64  # whatever infer handed on (a whole batch) in one wake-up

    def __init__(self, rules: RuleBook, mm_per_px: dict[str, float | None], inbox: StageQueue, outbox: StageQueue,
                 telemetry: Telemetry, budget_ms: float, late_policy: LatePolicy):
        super().__init__(inbox, outbox, telemetry)
        self.rules = rules
        self.mm_per_px = mm_per_px
        self.budget_ns = int(budget_ms * 1e6)
        self.budget_ms = budget_ms
        self.late_policy = late_policy

    def replace_rules(self, rules: RuleBook) -> None:
        self.rules = rules

    def handle(self, jobs: list[Job]) -> list[Job]:
        rules, mm_per_px = self.rules, self.mm_per_px  # one rule book per batch, even if replaced meanwhile
        verdicts = [rules.judge(job.detections, mm_per_px.get(job.frame.camera_id)) for job in jobs]
        now = time.monotonic_ns()  # the batch's verdicts are ready, and handed on, together
        return [self._on_time(job, verdict, now) for job, verdict in zip(jobs, verdicts)]

    def _on_time(self, job: Job, verdict: Verdict, now_ns: int) -> Job:
        age_ns = now_ns - job.frame.t_capture_ns
        if age_ns > self.budget_ns:
            verdict = late_verdict(verdict, age_ns / 1e6, self.budget_ms, self.late_policy)
        return self.mark(job, now_ns, verdict=verdict)
