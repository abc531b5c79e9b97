"""Publish: every settled job -> one verdict message; heartbeats on their own timer.

Owns the only thread that touches the PUB socket (ZeroMQ sockets are not thread-safe),
the per-camera published counters in telemetry and the end-to-end latency window. Its
inbox is lossless: verdicts are never shed. A job that reaches this stage unsettled (a
bug upstream) is published as ERROR rather than dropped.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Callable

from pipeline.messages import Job
from pipeline.queues import StageQueue
from pipeline.stages.base import Stage
from pipeline.states import Health
from pipeline.telemetry import Telemetry


class PublishStage(Stage):
    name = "publish"

    def __init__(self, publisher, inbox: StageQueue, telemetry: Telemetry, heartbeat_ms: int,
                 tap: Callable[[Job], Job] | None = None):
        super().__init__(inbox, None, telemetry)
        self.publisher = publisher
        self.tap = tap  # e.g. the failed-part archive naming its file; must never block or raise
        self.heartbeat_ns = int(heartbeat_ms * 1e6)
        self._next_heartbeat_ns = 0
        self.max_batch = 64  # drain bursts in one wakeup

    def handle(self, jobs: list[Job]) -> list[Job]:
        raise RuntimeError("job reached the publisher without a verdict")

    def emit(self, jobs: list[Job]) -> None:
        for job in jobs:
            self._publish(job)
        self.telemetry.published_dropped = self.publisher.dropped
        self._maybe_heartbeat()

    def _publish(self, job: Job) -> None:
        # the publish stage's take time: its share splits into queue wait and sending
        job = replace(job, takes=job.takes + ((self.name, self.taken_ns),))
        if self.tap is not None:
            job = self.tap(job)
        seq = self.publisher.publish_verdict(job)
        camera = self.telemetry.cameras[job.frame.camera_id]
        camera.verdicts_published += 1
        camera.last_seq = seq
        self.telemetry.counts[job.verdict.outcome.value] += 1
        self.telemetry.latency.add((time.monotonic_ns() - job.frame.t_capture_ns) / 1e6)
        self.telemetry.verdict_published(job)

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
