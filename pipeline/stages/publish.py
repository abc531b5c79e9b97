"""Publish: every settled job -> one verdict message; heartbeats on their own timer.

Owns the only thread that touches the PUB socket (ZeroMQ sockets are not thread-safe),
the per-camera published counters in telemetry and the end-to-end latency window. Its
inbox is lossless: verdicts are never shed. A job that reaches this stage unsettled (a
bug upstream) is published as ERROR rather than dropped.

Two orderings a subscriber relies on (docs/PROTOCOL.md): the first heartbeat goes out
before the first verdict, and `late` is decided here, with the same clock reading the
message's `latency_ms.total` is computed from (pipeline.core.deadline), after the archive
named its file.

The end of the latency clock is this stage's one reading of `time.monotonic_ns()` per
verdict, right before the send: it judges `late`, it is the message's
`latency_ms.total`, and every `VerdictSink` (telemetry, /metrics, the archive, the
bench, the eval) receives it as `PublishedVerdict.t_publish_ns` right after the send.
"""

from __future__ import annotations

import time

from pipeline.core.contracts import EvidenceStore, Publisher, VerdictSink
from pipeline.core.deadline import Deadline
from pipeline.core.messages import Job, PublishedVerdict
from pipeline.core.queues import StageQueue
from pipeline.core.states import Health
from pipeline.core.telemetry import Telemetry
from pipeline.stages.stage import Stage


class PublishStage(Stage):
    name = "publish"

    def __init__(self, publisher: Publisher, inbox: StageQueue, telemetry: Telemetry, heartbeat_ms: int,
                 sinks: VerdictSink, archive: EvidenceStore | None = None, deadline: Deadline | None = None):
        super().__init__(inbox, None, telemetry)
        self.publisher = publisher
        self.sinks = sinks  # every observer of a published verdict, telemetry included
        self.archive = archive  # names its file in the message before the send; never blocks or raises
        self.deadline = deadline
        self.heartbeat_ns = int(heartbeat_ms * 1e6)
        self._next_heartbeat_ns = 0
        self.max_batch = 64  # drain bursts in one wakeup

    def handle(self, jobs: list[Job]) -> list[Job]:
        raise RuntimeError("job reached the publisher without a verdict")

    def emit(self, jobs: list[Job]) -> None:
        self._maybe_heartbeat()  # before the verdicts: the very first one precedes every verdict
        for job in jobs:
            self._publish(job)
        self.telemetry.published_dropped = self.publisher.dropped
        self._maybe_heartbeat()

    def _publish(self, job: Job) -> None:
        # the publish stage's take time: its share splits into queue wait and sending
        job = job.evolve(takes=job.takes + ((self.name, self.taken_ns),))
        if self.archive is not None:
            job = self.archive.claim(job)
        now = time.monotonic_ns()  # the end of the latency clock (see the module docstring)
        if self.deadline is not None:
            job = self.deadline.judge(job, now)
        seq = self.publisher.publish_verdict(job, t_mono_ns=now)
        self.sinks.verdict_published(PublishedVerdict(job, seq, now))

    def idle(self) -> None:
        self._maybe_heartbeat()
        self.stats.progressed()  # an idle publisher is still making progress

    def finish(self) -> None:
        if self.telemetry.health is not Health.ERROR:
            self.telemetry.set_health(Health.STOPPING)
        self.heartbeat()

    def _maybe_heartbeat(self) -> None:
        if time.monotonic_ns() >= self._next_heartbeat_ns:
            self.heartbeat()

    def heartbeat(self) -> None:
        self._next_heartbeat_ns = time.monotonic_ns() + self.heartbeat_ns
        self.publisher.publish_heartbeat(self.telemetry.snapshot())
