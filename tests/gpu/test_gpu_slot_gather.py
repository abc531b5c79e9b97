"""The one-launch gather of a batch's device slots (pipeline.parts.gpu.slot_gather) copies
exactly what the per-slot copies did, in chunks of 16, with its fallback; and the CUDA
backend's output ring never lets a run overwrite a lent output (pipeline.core.buffers.OutputRing)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.gpu.test_gpu_onnxruntime_cuda import SIZE, frames, model_config


def device_slots(device, shape, dtype, values: list[np.ndarray]):
    import pycuda.driver as cuda

    from pipeline.parts.gpu.device_buffers import DeviceTensor

    with device.active():
        tensors = [DeviceTensor.allocate(shape, dtype) for _ in values]
        for tensor, value in zip(tensors, values):
            cuda.memcpy_htod(tensor.allocation, np.ascontiguousarray(value))
    return tensors


@pytest.mark.parametrize("shape, dtype, n, launches", [
    ((3, 64, 64), np.float32, 3, True),
    ((3, 32, 48), np.float16, 17, True),  # more than one launch of 16
    ((3, 5, 5), np.float32, 4, False),  # 300-byte rows: not whole 16-byte words, per-slot copies
])
def test_gather_copies_every_slot_into_its_row(device, shape, dtype, n, launches):
    import pycuda.driver as cuda

    from pipeline.parts.gpu.device_buffers import DeviceTensor
    from pipeline.parts.gpu.slot_gather import SlotGather

    rng = np.random.default_rng(7)
    values = [rng.standard_normal(shape).astype(dtype) for _ in range(n)]
    slots = device_slots(device, shape, dtype, values)
    with device.active():
        stream = cuda.Stream()
        batch = DeviceTensor.allocate((n + 2, *shape), dtype)  # rows past n stay as they were
        cuda.memset_d8(batch.allocation, 0, batch.nbytes)
        gather = SlotGather(device, batch, stream)
        assert gather.one_launch is launches
        gather(slots)
        stream.synchronize()
        got = batch.to_host()
        for tensor in [*slots, batch]:
            tensor.free()
    assert np.array_equal(got[:n], np.stack(values)) and not got[n:].any()


@pytest.mark.timeout(300)
@pytest.mark.parametrize("cuda_graph", [False, True], ids=["plain", "cuda_graph"])
def test_a_lent_output_is_never_overwritten_by_the_next_runs(device, cuda_provider, cuda_graph):
    from pipeline.parts.backends.onnxruntime_cuda import OnnxRuntimeCudaBackend
    from pipeline.parts.gpu.device_buffers import DeviceSlotPool
    from pipeline.parts.preprocessing.letterbox_kernel import GpuLetterboxer

    backend = OnnxRuntimeCudaBackend.from_config(model_config(max_batch=4, cuda_graph=cuda_graph), device=device)
    pool = DeviceSlotPool(device, (3, SIZE, SIZE), np.float32, 4)
    letterboxer = GpuLetterboxer(device, (SIZE, SIZE))
    try:
        backend.warmup(2)
        backend.warmup_thread()
        lent, copies = [], []
        for seed in range(3):  # the ring's three buffers, each lent, none given back
            slots = [pool.acquire(1.0) for _ in range(4)]
            for image, slot in zip(frames(4, seed), slots):
                letterboxer(image, slot.array)
            backend.wait_for([letterboxer.flush()])
            out = backend.infer_tensors([slot.array for slot in slots])
            lent.append((out, backend.lend_output()))
            copies.append(out.copy())
            for slot in slots:
                slot.release()
        for (out, _), copy in zip(lent, copies):
            assert np.array_equal(out, copy)  # later runs wrote elsewhere
        lent[0][1].release()
        out = backend.infer(np.zeros((2, 3, SIZE, SIZE), np.float32))  # the one buffer given back
        assert np.shares_memory(out, lent[0][0])  # the next run writes where decide gave back
        for _, slot in lent[1:]:
            slot.release()
    finally:
        letterboxer.close()
        pool.close()
        backend.close()
