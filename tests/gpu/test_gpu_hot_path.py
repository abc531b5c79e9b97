"""The GPU hot path: page-locked frame slots uploaded without a host wait, the infer stream
ordered after the preprocess events, one CUDA graph per batch size, and the whole
pipeline so built giving every frame exactly one verdict."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.composition.app import Pipeline
from pipeline.composition.assembly import build_parts
from pipeline.config.model import OnnxRuntimeCpuConfig, OnnxRuntimeCudaConfig
from pipeline.parts.backends.onnxruntime_backend import OnnxRuntimeBackend
from pipeline.parts.preprocessing.letterbox import Letterboxer
from pipeline.parts.sources.synthetic import SyntheticSource
from tests.pipeline_helpers import (
    DEMO_MODEL,
    VerdictCollector,
    assert_exactly_once,
    make_config,
    run_bayer_camera_pipeline,
)

pytestmark = pytest.mark.timeout(300)
SIZE = 416  # the demo model's input
MAX_BATCH = 4


def model_config(**kw) -> OnnxRuntimeCudaConfig:
    return OnnxRuntimeCudaConfig(path=DEMO_MODEL, input_size=SIZE, threads=0, max_batch=MAX_BATCH, **kw)


@pytest.fixture(scope="module")
def graph_backend(device, cuda_provider):
    from pipeline.parts.backends.onnxruntime_cuda import OnnxRuntimeCudaBackend

    backend = OnnxRuntimeCudaBackend.from_config(
        model_config(cuda_graph=True), device=device)
    backend.warmup(2)
    backend.warmup_thread()  # captures graphs 1..MAX_BATCH on this thread
    yield backend
    backend.close()


@pytest.fixture(scope="module")
def streamed(device):
    from pipeline.parts.gpu.device_buffers import DeviceSlotPool, PinnedAllocator
    from pipeline.parts.preprocessing.letterbox_kernel import GpuLetterboxer

    pinned = PinnedAllocator(device)
    letterboxer = GpuLetterboxer(device, (SIZE, SIZE), pinned=pinned)
    pool = DeviceSlotPool(device, (3, SIZE, SIZE), np.float32, MAX_BATCH)
    yield pinned, letterboxer, pool
    letterboxer.close()
    pool.close()
    pinned.close()


def images(n: int) -> list[np.ndarray]:
    source = SyntheticSource(width=640, height=480, seed=9, defect_probability=0.5, realtime=False)
    return [source.render(k).image for k in range(n)]


@pytest.mark.parametrize("batch", list(range(1, MAX_BATCH + 1)))
def test_event_ordered_graph_run_equals_the_cpu_backend(graph_backend, streamed, batch):
    pinned, letterboxer, pool = streamed
    frames = images(batch)
    slots_in = [pinned((480, 640, 3), np.uint8) for _ in frames]
    for slot, frame in zip(slots_in, frames):
        slot[:] = frame
    assert all(pinned.owns(s) for s in slots_in)
    tensors = [pool.acquire(1.0) for _ in frames]
    try:
        for frame, tensor in zip(slots_in, tensors):
            letterboxer(frame, tensor.array)  # enqueued only: no host wait
        fence = letterboxer.flush()
        graph_backend.wait_for([fence])  # the infer stream waits on the GPU
        gpu_out = graph_backend.infer_tensors([t.array for t in tensors]).copy()
        fence.synchronize()
    finally:
        for tensor in tensors:
            tensor.release()
    cpu = OnnxRuntimeBackend.from_config(OnnxRuntimeCpuConfig(path=DEMO_MODEL, input_size=SIZE, threads=0, max_batch=MAX_BATCH))
    try:
        lb = Letterboxer((SIZE, SIZE))
        host = [np.empty((3, SIZE, SIZE), np.float32) for _ in frames]
        for frame, out in zip(frames, host):
            lb(frame, out)
        cpu_out = cpu.infer_tensors(host)
    finally:
        cpu.close()
    assert gpu_out.shape == cpu_out.shape
    # The head's rows are sorted best first; near-equal scores may swap rows between the
    # two runs (inputs differ by <= 1/255, cuDNN sums in another order), so compare the
    # sorted score columns, whose i-th values differ by at most the largest difference.
    assert np.abs(gpu_out[..., 4] - cpu_out[..., 4]).max() <= 0.02


@pytest.mark.parametrize("batch", [1, MAX_BATCH])
def test_an_enqueued_graph_run_lands_the_same_output_at_its_fence(graph_backend, streamed, batch):
    """`start_tensors` returns before the GPU is done; after its fence the lent buffer holds
    what a synchronous run gives, and the next run enqueued meanwhile writes another buffer."""
    pinned, letterboxer, pool = streamed
    slots_in = [pinned((480, 640, 3), np.uint8) for _ in range(batch)]
    for slot, frame in zip(slots_in, images(batch)):
        slot[:] = frame
    tensors = [pool.acquire(1.0) for _ in range(batch)]
    try:
        for frame, tensor in zip(slots_in, tensors):
            letterboxer(frame, tensor.array)
        uploaded = letterboxer.flush()
        graph_backend.wait_for([uploaded])
        expected = graph_backend.infer_tensors([t.array for t in tensors]).copy()
        first, first_done = graph_backend.start_tensors([t.array for t in tensors])
        first_lent = graph_backend.lend_output()
        second, second_done = graph_backend.start_tensors([t.array for t in tensors])  # runs ahead of the first's reader
        second_lent = graph_backend.lend_output()
        assert first_done is not None and second_done is not None and first_lent.fence is first_done
        assert first_lent.array is not second_lent.array  # the ring: the second never writes the first's buffer
        first_done.synchronize()
        np.testing.assert_array_equal(first, expected)
        second_done.synchronize()
        np.testing.assert_array_equal(second, expected)
        first_lent.release()
        second_lent.release()
    finally:
        for tensor in tensors:
            tensor.release()


def test_gpu_pipeline_with_graphs_per_batch_and_pinned_frame_slots(device, cuda_provider, free_tcp_endpoint):
    frames = 60
    collector = VerdictCollector(free_tcp_endpoint)
    model = {"backend": "onnxruntime-cuda", "preprocess": "gpu", "max_batch": MAX_BATCH,
             "max_wait_us": 2000, "cuda_graph": True, "input_size": SIZE}
    try:
        config = make_config(free_tcp_endpoint, cameras=3, fps=120, model=model, queues={"infer": {"size": 8}})
        parts = build_parts(config)
        pipeline = Pipeline(config, parts, max_frames=frames)
        assert all(pool.pinned for pool in pipeline.frame_pools.values())
        pipeline.start()
        for capture in pipeline.captures:
            capture.thread.join(60)
        assert pipeline.shutdown(timeout_s=10) == 0
        assert collector.wait_for({f"cam{i}": frames for i in range(3)}, timeout_s=10)
    finally:
        collector.close()
    for i in range(3):
        verdicts = collector.verdicts[f"cam{i}"]
        assert_exactly_once(verdicts, frames)
        assert sum(v["verdict"] in ("PASS", "FAIL") for v in verdicts) >= frames // 2
        pool = pipeline.frame_pools[f"cam{i}"]
        assert pool.available == pool.count
    assert sum(c.frames_unslotted for c in pipeline.captures) < frames
    assert collector.heartbeats[-1]["backend"].endswith(":graph")


def test_a_bayer_camera_is_uploaded_raw_and_demosaiced_by_the_kernel(device, cuda_provider, free_tcp_endpoint):
    """A Bayer camera's page-locked slots hold the HxW mosaic (one byte a pixel); the
    kernel demosaics it exactly like OpenCV, so the verdicts and detections equal those of
    the same camera demosaicing each frame itself with OpenCV (no slots), on the same GPU."""
    frames = 30
    model = {"backend": "onnxruntime-cuda", "preprocess": "gpu", "max_batch": 1, "input_size": SIZE}
    pipeline, verdicts = run_bayer_camera_pipeline(free_tcp_endpoint, frames, **model)
    _, reference = run_bayer_camera_pipeline(free_tcp_endpoint, frames, lend=False, **model)
    assert_exactly_once(verdicts, frames)
    pool = pipeline.frame_pools["cam0"]
    assert pool.pinned and pool.shape == (480, 640) and pool.available == pool.count
    assert pipeline.captures[0].frames_unslotted < frames
    judged, expected = inspected(verdicts), inspected(reference)
    both = judged.keys() & expected.keys()  # a frame shed by a full queue in either run is not compared
    assert len(both) >= frames // 2
    assert [judged[k][0] for k in sorted(both)] == [expected[k][0] for k in sorted(both)]
    for k in both:  # same input tensors; cuDNN may sum in another order between sessions
        assert [d["class"] for d in judged[k][1]] == [d["class"] for d in expected[k][1]]
        for got, want in zip(judged[k][1], expected[k][1]):
            assert got["score"] == pytest.approx(want["score"], abs=0.01)
            assert got["box"] == pytest.approx(want["box"], abs=1.0)


def inspected(verdicts: list[dict]) -> dict[int, tuple]:
    return {v["frame_id"]: (v["verdict"], v["detections"]) for v in verdicts if v["verdict"] in ("PASS", "FAIL")}
