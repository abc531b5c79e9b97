"""Decide: detections -> verdict, then the deadline.

Owns applying the rule book and the late policy. A verdict ready after `budget_ms` from
capture is flagged `late`; under `fail_safe` it becomes FAIL (reason `deadline`), under
`not_inspected` NOT_INSPECTED, under `report` it keeps its outcome. The rule book can be
swapped at run time (`replace_rules`) without stopping the stage: the reference is
replaced atomically and the next job uses the new rules.
"""

from __future__ import annotations

import time

from pipeline.config.models import LatePolicy
from pipeline.messages import Job, Outcome, Reason, ReasonCode, Verdict
from pipeline.queues import StageQueue
from pipeline.rules import RuleBook
from pipeline.stages.base import Stage
from pipeline.telemetry import Telemetry


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
        rules = self.rules  # one rule book per batch, even if replaced meanwhile
        return [self._one(job, rules) for job in jobs]

    def _one(self, job: Job, rules: RuleBook) -> Job:
        verdict = rules.judge(job.detections, self.mm_per_px.get(job.frame.camera_id))
        age_ns = time.monotonic_ns() - job.frame.t_capture_ns
        if age_ns > self.budget_ns:
            verdict = self._late(verdict, age_ns / 1e6)
        return self.mark(job, verdict=verdict)

    def _late(self, verdict: Verdict, age_ms: float) -> Verdict:
        if self.late_policy is LatePolicy.REPORT:
            return Verdict(verdict.outcome, verdict.reasons, late=True)
        outcome = Outcome.FAIL if self.late_policy is LatePolicy.FAIL_SAFE else Outcome.NOT_INSPECTED
        reason = Reason(ReasonCode.DEADLINE, f"verdict ready {age_ms:.1f} ms after capture, budget {self.budget_ms:g} ms")
        return Verdict(outcome, (reason, *verdict.reasons), late=True)
