"""StageQueue: capacity, overflow policies, shedding into verdicts, end-of-stream."""

import threading
import time

import numpy as np
import pytest

from pipeline.config.models import Overflow
from pipeline.core.messages import EndOfStream, Frame, Job, Outcome, ReasonCode
from pipeline.core.queues import StageQueue


def job(i: int) -> Job:
    return Job(Frame("cam0", i, np.zeros((4, 4, 3), np.uint8), time.monotonic_ns(), time.time_ns()))


def make(policy: Overflow, capacity: int = 2):
    shed: list[Job] = []
    return StageQueue("q", capacity, policy, 0.01, on_shed=shed.append), shed


def test_drop_oldest_sheds_the_oldest_job_as_not_inspected():
    q, shed = make(Overflow.DROP_OLDEST)
    for i in range(3):
        q.put(job(i))
    assert [j.frame.frame_id for j in shed] == [0]
    assert shed[0].verdict.outcome is Outcome.NOT_INSPECTED
    assert shed[0].verdict.reasons[0].code is ReasonCode.QUEUE_FULL
    assert [q.get(0.1).frame.frame_id for _ in range(2)] == [1, 2]
    assert q.drops == 1


def test_drop_newest_refuses_the_incoming_job():
    q, shed = make(Overflow.DROP_NEWEST)
    for i in range(3):
        q.put(job(i))
    assert [j.frame.frame_id for j in shed] == [2]
    assert q.depth == 2


def test_block_waits_for_room_then_sheds_after_its_timeout():
    q, shed = make(Overflow.BLOCK)
    q.put(job(0))
    q.put(job(1))
    consumer = threading.Timer(0.001, lambda: q.get(1.0))
    q.block_timeout_s = 1.0
    consumer.start()
    q.put(job(2))  # waits until the timer frees a place
    assert shed == []
    q.block_timeout_s = 0.0
    q.put(job(3))
    assert [j.frame.frame_id for j in shed] == [3]


def test_end_of_stream_is_accepted_past_capacity_and_never_shed():
    q, shed = make(Overflow.DROP_OLDEST, capacity=1)
    q.put(job(0))
    q.put(EndOfStream("x"))
    q.put(job(1))  # sheds job 0, not the marker
    assert [j.frame.frame_id for j in shed] == [0]
    assert isinstance(q.get(0.1), EndOfStream)


def test_lossless_queue_never_sheds():
    q = StageQueue("publish", 1, lossless=True)
    for i in range(10):
        q.put(job(i))
    assert q.depth == 10 and q.drops == 0


def test_get_batch_collects_up_to_max_within_wait():
    q, _ = make(Overflow.DROP_NEWEST, capacity=10)
    for i in range(5):
        q.put(job(i))
    batch = q.get_batch(3, 0.0, 0.1)
    assert [j.frame.frame_id for j in batch] == [0, 1, 2]
    assert len(q.get_batch(8, 0.01, 0.1)) == 2
    assert q.get_batch(8, 0.01, 0.01) == []


def test_get_batch_stops_at_end_of_stream():
    q, _ = make(Overflow.DROP_NEWEST, capacity=10)
    q.put(job(0))
    q.put(EndOfStream("x"))
    q.put(job(1))
    batch = q.get_batch(8, 0.05, 0.1)
    assert len(batch) == 2 and isinstance(batch[-1], EndOfStream)


@pytest.mark.timeout(10)
def test_shed_job_releases_its_tensor_slot():
    from pipeline.core.buffers import HostSlotPool

    pool = HostSlotPool((3, 4, 4), np.float32, 1)
    q, shed = make(Overflow.DROP_OLDEST, capacity=1)
    slot = pool.acquire(0.1)
    from dataclasses import replace

    q.put(replace(job(0), tensor=slot))
    assert pool.acquire(0.01) is None
    q.put(job(1))
    assert shed and pool.acquire(0.1) is not None
