"""The host output ring and the raw rows' release protocol (pipeline.core.buffers.OutputRing,
pipeline.core.messages.RawBatch): infer hands each job its row of a lent output buffer,
decide gives the buffer back once the batch is decoded, a job settled on the way gives
its row back, and a run never overwrites rows not yet decoded: it waits. Real stages on
real queues and threads with the real demo model; only the GPU's D2H copy into the ring
is played by tests.fakes.RingBackend."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from pipeline.composition.assembly import make_decoder, open_backend
from pipeline.core.buffers import HostSlotPool, OutputRing
from pipeline.core.messages import Outcome, RawBatch, ReasonCode, TensorSlot
from pipeline.core.queues import StageQueue
from pipeline.core.telemetry import Telemetry
from pipeline.parts.rules import RuleBook
from pipeline.stages.decide import DecideStage
from pipeline.stages.infer import InferStage
from tests.fakes import AheadBackend, LandingFence, RingBackend
from tests.pipeline_helpers import make_config
from tests.test_errors import job, preprocessed, queues, run_stage


def test_a_lent_buffer_comes_back_only_when_every_row_is_released():
    ring = OutputRing((2, 3), np.float32, count=1, wait_s=0.01)
    ring.current()[:] = 1
    batch = RawBatch(ring.current(), 2, ring.lend())
    first, second = batch.rows()
    first.release()
    first.release()  # idempotent: one row does not count twice
    assert ring.available == 0
    second.release()
    assert ring.available == 1


def test_a_run_with_every_buffer_out_raises_after_its_wait_and_never_overwrites():
    ring = OutputRing((1, 3), np.float32, count=1, wait_s=0.01)
    ring.current()[:] = 7
    lent = ring.lend()
    with pytest.raises(RuntimeError, match="no host output buffer was given back"):
        ring.current()
    assert (lent.array == 7).all()


def test_a_run_waits_for_decide_to_give_a_buffer_back():
    ring = OutputRing((1, 3), np.float32, count=1, wait_s=30)
    ring.current()
    lent = ring.lend()
    got: list = []
    waiter = threading.Thread(target=lambda: got.append(ring.current()))
    waiter.start()
    waiter.join(0.2)
    assert not got  # still waiting: the only buffer is out
    lent.release()
    waiter.join(30)
    assert got and got[0] is lent.array


def test_an_unlent_buffer_is_reused_by_the_next_run():
    ring = OutputRing((1, 3), np.float32, count=2)
    assert ring.current() is ring.current()  # a caller that never lends keeps today's contract
    assert ring.available == 2


@pytest.fixture(scope="module")
def backend():
    opened = open_backend(make_config("tcp://127.0.0.1:1", model={"max_batch": 2}).model)
    yield opened
    opened.close()


def decide_stage(backend, inbox, outbox, telemetry):
    config = make_config("tcp://127.0.0.1:1")
    return DecideStage(make_decoder(config.model, backend), RuleBook(config.rules, backend.class_names),
                       {"cam0": None}, inbox, outbox, telemetry, 60_000, config.late_policy)


def test_decide_decodes_the_lent_rows_as_infer_did_and_gives_the_buffers_back(backend):
    ring_backend = RingBackend(backend, count=2)
    jobs = preprocessed(backend, 6)
    inbox, middle = StageQueue("infer", 16, lossless=True), StageQueue("decide", 16, lossless=True)
    outbox = StageQueue("publish", 16, lossless=True)
    telemetry = Telemetry(["cam0"])
    infer = InferStage(ring_backend, inbox, middle, telemetry, budget_ms=60_000, max_batch=2)
    decide = decide_stage(backend, middle, outbox, telemetry)
    decide.start()
    got = run_stage(infer, inbox, outbox, jobs)  # 3 batches of 2 through a ring of 2: infer waited for decide
    assert len(got) == 6 and all(j.verdict.outcome in (Outcome.PASS, Outcome.FAIL) for j in got), [j.verdict for j in got]
    assert all(j.raw is None and j.detections is not None for j in got)
    assert ring_backend.ring.available == 2  # every buffer given back


def test_a_job_shed_between_infer_and_decide_gives_its_row_back(backend):
    ring_backend = RingBackend(backend, count=1, wait_s=30)
    inbox, outbox = queues()
    infer = InferStage(ring_backend, inbox, outbox, Telemetry(["cam0"]), budget_ms=60_000, max_batch=2)
    inferred = run_stage(infer, inbox, outbox, preprocessed(backend, 2))
    assert ring_backend.ring.available == 0  # lent to the rows on their way to decide
    shed = inferred[0].settle(Outcome.NOT_INSPECTED, ReasonCode.QUEUE_FULL, "decide queue full", "shed:decide")
    assert shed.raw is None and ring_backend.ring.available == 0
    inbox, outbox = queues()
    telemetry = Telemetry(["cam0"])
    (decided,) = run_stage(decide_stage(backend, inbox, outbox, telemetry), inbox, outbox, [inferred[1]])
    assert decided.verdict.outcome is Outcome.PASS and ring_backend.ring.available == 1


def test_an_enqueued_batch_holds_its_slots_until_its_last_row_after_its_fence():
    given_back: list = []
    held = [TensorSlot(np.zeros(2), given_back.append).lend() for _ in range(3)]
    landed: list = []
    fence = LandingFence(lambda: landed.append(True))
    for slot in held:
        slot.fence = fence
    batch = RawBatch(np.zeros((2, 3)), 2, None, fence, held)
    first, second = batch.rows()
    first.release()
    assert not given_back and not landed  # a row still out: the GPU may read the slots
    second.release()
    assert landed == [True] and fence.waits == 1 and given_back == held  # the fence first, once


def test_decide_waits_for_an_enqueued_batch_before_it_decodes_and_then_gives_every_slot_back(backend):
    ahead = AheadBackend(backend, count=2)
    w, h = backend.input_size
    pool = HostSlotPool((3, h, w), backend.input_dtype, 6)
    inbox, outbox = queues()
    from pipeline.parts.preprocessing.letterbox import Letterboxer
    from pipeline.stages.preprocess import PreprocessStage

    preprocess = PreprocessStage(Letterboxer((w, h)), pool, inbox, outbox, Telemetry(["cam0"]), upstreams=1)
    jobs = run_stage(preprocess, inbox, outbox, [job(i, np.full((h, w, 3), 40 * i, np.uint8)) for i in range(6)])
    assert pool.available == 0  # every input slot travels with its job
    inbox, middle = StageQueue("infer", 16, lossless=True), StageQueue("decide", 16, lossless=True)
    outbox = StageQueue("publish", 16, lossless=True)
    telemetry = Telemetry(["cam0"])
    infer = InferStage(ahead, inbox, middle, telemetry, budget_ms=60_000, max_batch=1)
    assert infer.ahead  # batches of one: run ahead
    decide = decide_stage(backend, middle, outbox, telemetry)
    decide.start()
    got = run_stage(infer, inbox, outbox, jobs)
    # NaN until the fence: a decode before the wait would have made ERROR verdicts
    assert [j.verdict.outcome in (Outcome.PASS, Outcome.FAIL) for j in got] == [True] * 6, [j.verdict for j in got]
    assert [f.waits for f in ahead.fences] == [1] * 6
    assert pool.available == 6 and ahead.ring.available == 2  # slots and buffers back, after their fences


def test_with_batching_the_stage_runs_each_batch_to_its_end(backend):
    infer = InferStage(AheadBackend(backend, count=2), *queues(), Telemetry(["cam0"]), budget_ms=60_000, max_batch=2)
    assert not infer.ahead
