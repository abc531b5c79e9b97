"""The late policy: what a verdict becomes when it is ready after `budget_ms`.

Owns one rule, applied twice: the decide stage applies it when the verdict is made, and
the publish stage applies it again at the moment the verdict is handed to ZeroMQ, with
the same clock reading that the message's `latency_ms.total` is computed from. So a
published verdict past its budget always says `late: true` (the decide-time check alone
missed the time spent between decide and the send).

Under `fail_safe` a late PASS becomes FAIL (reason `deadline`), under `not_inspected`
NOT_INSPECTED; under `report` it keeps its outcome. A verdict that already says the part
was not passed (FAIL, NOT_INSPECTED, ERROR) keeps its outcome and reasons at publish
time and is only flagged: turning an ERROR into a FAIL would hide why.
"""

from __future__ import annotations

from pipeline.config.models import LatePolicy
from pipeline.core.messages import Job, Outcome, Reason, ReasonCode, Verdict


def late_verdict(verdict: Verdict, age_ms: float, budget_ms: float, policy: LatePolicy) -> Verdict:
    """`verdict` as the late policy makes it when it is ready `age_ms` after capture."""
    if policy is LatePolicy.REPORT or verdict.outcome in (Outcome.NOT_INSPECTED, Outcome.ERROR):
        return Verdict(verdict.outcome, verdict.reasons, late=True)
    outcome = Outcome.FAIL if policy is LatePolicy.FAIL_SAFE else Outcome.NOT_INSPECTED
    reason = Reason(ReasonCode.DEADLINE, f"verdict ready {age_ms:.1f} ms after capture, budget {budget_ms:g} ms")
    return Verdict(outcome, (reason, *verdict.reasons), late=True)


class Deadline:
    """`budget_ms` and the late policy, applied to a job at a given monotonic time."""

    def __init__(self, budget_ms: float, policy: LatePolicy):
        self.budget_ms = budget_ms
        self.budget_ns = int(budget_ms * 1e6)
        self.policy = policy

    def judge(self, job: Job, now_ns: int) -> Job:
        """The job with its verdict made late when `now_ns` is past its budget."""
        verdict = job.verdict
        age_ns = now_ns - job.frame.t_capture_ns
        if verdict is None or verdict.late or age_ns <= self.budget_ns:
            return job
        return job.evolve(verdict=late_verdict(verdict, age_ns / 1e6, self.budget_ms, self.policy))
