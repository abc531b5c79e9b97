"""The hot path's buffer and timing contracts on the CPU: frames in lent slots, batches
handed on in one hop, deadline-aware batching, queue wait told apart from work."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from pipeline.composition.assembly import open_backend
from pipeline.composition.driver import Substitutions
from pipeline.config.models import Overflow
from pipeline.core.buffers import FramePool
from pipeline.core.messages import Frame, Job, PublishedVerdict, TensorSlot, mark_spans, queue_waits, stage_split
from pipeline.core.queues import StageQueue
from pipeline.core.telemetry import Telemetry
from pipeline.stages.infer import DOWNSTREAM_MARGIN_NS, InferStage
from tests.fakes import StreamOrderedBackend
from tests.pipeline_helpers import VerdictCollector, assert_exactly_once, make_config, run_to_end

pytestmark = pytest.mark.timeout(120)


def job(frame_id: int = 0, age_ms: float = 0.0) -> Job:
    t = time.monotonic_ns() - int(age_ms * 1e6)
    return Job(Frame("cam", frame_id, None, t, time.time_ns()))


class RecordingFence:
    """Stands in for a CUDA event: counts the host's waits on it, and whether it was told
    that its work has run (`passed`)."""

    def __init__(self):
        self.waits = 0
        self.done = False

    def synchronize(self) -> None:
        if not self.done:
            self.waits += 1
        self.done = True

    def passed(self) -> None:
        self.done = True


class JobList:
    """A verdict sink keeping every published job."""

    def __init__(self, jobs: list[Job]):
        self.jobs = jobs

    def verdict_published(self, published: PublishedVerdict) -> None:
        self.jobs.append(published.job)


def run_pipeline(endpoint: str, frames: int, lend: bool):
    """The real pipeline (synthetic cameras, demo model); every published job, in order."""
    config = make_config(endpoint, cameras=2, fps=200, realtime=False)
    published: list[Job] = []
    # lend=False: the sink is taken to read the image after publish, so no slots are lent
    substitutions = Substitutions(sinks=(JobList(published),), sinks_read_images=not lend)
    collector = VerdictCollector(endpoint)
    try:
        driver = run_to_end(config, frames, substitutions)
        pipeline = driver.pipeline
        assert driver.stop() == 0
        assert collector.wait_for({"cam0": frames, "cam1": frames}, timeout_s=10)
    finally:
        collector.close()
    return pipeline, published, collector.verdicts


def test_frames_travel_in_lent_slots_and_every_slot_comes_back(free_tcp_endpoint):
    frames = 30
    pipeline, published, verdicts = run_pipeline(free_tcp_endpoint, frames, lend=True)
    for cam in ("cam0", "cam1"):
        assert_exactly_once(verdicts[cam], frames)
        pool = pipeline.frame_pools[cam]
        assert pool.available == pool.count, "a frame slot was never given back"
    inspected = [j for j in published if j.verdict.outcome.value in ("PASS", "FAIL")]
    assert inspected, "nothing was inspected"
    # the slot went back after the letterbox read it, and the image with it
    assert all(j.frame_slot is None and j.frame.image is None for j in inspected)
    assert sum(c.frames_unslotted for c in pipeline.captures) < frames


def test_without_lending_each_frame_keeps_its_own_image(free_tcp_endpoint):
    _pipeline, published, _verdicts = run_pipeline(free_tcp_endpoint, 10, lend=False)
    inspected = [j for j in published if j.verdict.outcome.value in ("PASS", "FAIL")]
    assert inspected and all(j.frame.image is not None for j in inspected)


def test_verdict_reports_queue_wait_apart_from_each_stages_share(free_tcp_endpoint):
    _pipeline, _published, verdicts = run_pipeline(free_tcp_endpoint, 10, lend=True)
    for v in verdicts["cam0"]:
        if v["verdict"] not in ("PASS", "FAIL"):
            continue
        waits, shares = v["queue_wait_ms"], v["latency_ms"]
        assert {"preprocess", "infer", "decide", "publish"} <= waits.keys()
        for stage in ("preprocess", "infer", "decide"):
            assert 0 <= waits[stage] <= shares[stage] + 0.001


def test_stage_split_divides_each_share_at_the_take_time():
    marks = (("capture", 100), ("preprocess", 400), ("infer", 1000))
    takes = (("preprocess", 300), ("infer", 450))
    assert stage_split(0, marks, takes) == [("capture", 0, 100), ("preprocess", 200, 100), ("infer", 50, 550)]
    assert queue_waits(0, marks, takes + (("publish", 1300),)) == [("preprocess", 200), ("infer", 50), ("publish", 300)]


def test_mark_spans_start_each_stage_at_the_previous_mark():
    marks = (("capture", 100), ("preprocess", 400), ("infer", 1000))
    assert mark_spans(40, marks) == [("capture", 40, 100), ("preprocess", 100, 400), ("infer", 400, 1000)]
    assert mark_spans(40, ()) == []


def test_put_many_keeps_order_and_sheds_each_job_by_the_policy():
    shed: list[Job] = []
    q = StageQueue("q", 3, Overflow.DROP_OLDEST, on_shed=shed.append)
    q.put_many([job(i) for i in range(5)])
    assert [item.frame.frame_id for item in q.drain()] == [2, 3, 4]
    assert [j.frame.frame_id for j in shed] == [0, 1] and all(j.settled for j in shed)


def test_get_batch_takes_what_is_queued_but_does_not_wait_past_the_deadline():
    q = StageQueue("q", 8)
    q.put(job(0))
    # max_wait of a minute, but the deadline has passed: no waiting (else the test times out)
    assert len(q.get_batch(4, 60.0, 1.0, wait_until=lambda batch: 0.0)) == 1
    q.put_many([job(1), job(2)])
    assert len(q.get_batch(4, 60.0, 1.0, wait_until=lambda batch: 0.0)) == 2


def test_get_batch_waits_for_more_while_the_deadline_allows():
    q = StageQueue("q", 8)
    q.put(job(0))
    feeder = threading.Thread(target=lambda: [q.put(job(i)) for i in range(1, 4)])
    got: list = []
    taker = threading.Thread(target=lambda: got.extend(q.get_batch(4, 60.0, 1.0, lambda batch: time.monotonic() + 60)))
    taker.start()
    feeder.start()
    taker.join(30)
    feeder.join(30)
    assert [j.frame.frame_id for j in got] == [0, 1, 2, 3]


def test_infer_waits_only_while_the_oldest_frame_can_still_make_its_budget():
    stage = InferStage(object(), StageQueue("infer", 4), StageQueue("decide", 4), Telemetry(["cam"]),
                       budget_ms=30, max_batch=4, max_wait_us=5000)
    stage.service_ns[2] = 8e6  # a batch of two takes 8 ms
    fresh, stale = job(0, age_ms=1.0), job(1, age_ms=25.0)
    expected = (fresh.frame.t_capture_ns + 30e6 - 8e6 - DOWNSTREAM_MARGIN_NS) / 1e9
    assert stage._wait_until([fresh]) == pytest.approx(expected)
    assert stage._wait_until([fresh, stale]) < time.monotonic()  # waiting would make the stale one late


def test_a_slot_is_given_back_only_after_its_fence():
    returned: list = []
    slot = TensorSlot(np.zeros(4), returned.append).lend()
    fence = slot.fence = RecordingFence()
    slot.release()
    slot.release()  # idempotent
    assert fence.waits == 1 and returned == [slot] and slot.fence is None


@pytest.mark.parametrize("ordered", [True, False], ids=["stream-ordered", "host-waits"])
def test_infer_waits_on_each_fence_once_and_the_host_only_when_the_backend_cannot(ordered):
    """Two jobs whose slots share the preprocess batch's fence: a stream-ordered backend
    is handed it (its GPU waits), and after the run the slots go back without a host wait;
    any other backend makes the host wait on it, once."""
    backend = open_backend(make_config("tcp://127.0.0.1:1", model={"max_batch": 2}).model)
    used = StreamOrderedBackend(backend) if ordered else backend
    stage = InferStage(used, StageQueue("infer", 4), StageQueue("decide", 4), Telemetry(["cam"]),
                       budget_ms=1000, max_batch=2)
    w, h = backend.input_size
    returned: list = []
    fence = RecordingFence()
    jobs = []
    for i in range(2):
        tensor = TensorSlot(np.zeros((3, h, w), backend.input_dtype), returned.append).lend()
        frame = TensorSlot(np.zeros((h, w, 3), np.uint8), returned.append).lend()
        tensor.fence = frame.fence = fence
        jobs.append(job(i).evolve(tensor=tensor, frame_slot=frame))
    try:
        done = stage.handle(jobs)
    finally:
        backend.close()
    assert [j.raw is not None and not j.settled for j in done] == [True, True]
    assert len(returned) == 4 and fence.done
    assert fence.waits == (0 if ordered else 1)
    if ordered:
        assert used.waited_on == [fence]


def test_frame_pool_knows_its_own_buffers():
    pool = FramePool((4, 6, 3), 2)
    slot = pool.acquire(0.0)
    assert pool.owns(slot.array) and not pool.owns(np.zeros((4, 6, 3), np.uint8))
    slot.release()
    assert pool.available == 2
