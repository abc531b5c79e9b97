"""ONNX Runtime on CUDA with IO binding bound to the kernel's device slots gives the
CPU backend's outputs, and the same verdicts on the same synthetic frames. Both run the
same graph with the candidate head appended, so outputs are (N, K, 6)."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.config.model import OnnxRuntimeCpuConfig, OnnxRuntimeCudaConfig
from pipeline.config.models import RulesConfig
from pipeline.parts.backends.onnxruntime_backend import OnnxRuntimeBackend
from pipeline.parts.decoding.yolo_decode import decode_candidates, to_detections
from pipeline.parts.preprocessing.letterbox import Letterboxer
from pipeline.parts.rules import RuleBook
from pipeline.parts.sources.synthetic import SyntheticSource
from tests.pipeline_helpers import DEMO_MODEL


def _model_side() -> int:
    import onnxruntime as ort

    side = ort.InferenceSession(str(DEMO_MODEL), providers=["CPUExecutionProvider"]).get_inputs()[0].shape[3]
    return side if isinstance(side, int) else 320


SIZE = _model_side()  # the model's own input size when fixed (the demo model: 416)


def model_config(**kw) -> OnnxRuntimeCudaConfig:
    return OnnxRuntimeCudaConfig(path=DEMO_MODEL, input_size=SIZE, threads=0, **kw)


@pytest.fixture(scope="module")
def cpu_backend():
    backend = OnnxRuntimeBackend.from_config(OnnxRuntimeCpuConfig(path=DEMO_MODEL, input_size=SIZE, threads=0, max_batch=4))
    yield backend
    backend.close()


@pytest.fixture(scope="module", params=[False, True], ids=["plain", "cuda_graph"])
def gpu_backend(request, device, cuda_provider):
    from pipeline.parts.backends.onnxruntime_cuda import OnnxRuntimeCudaBackend

    backend = OnnxRuntimeCudaBackend.from_config(model_config(max_batch=4,
                                                              cuda_graph=request.param), device=device)
    backend.warmup(2)
    yield backend
    backend.close()


@pytest.fixture(scope="module")
def gpu_slots(device):
    from pipeline.parts.gpu.device_buffers import DeviceSlotPool
    from pipeline.parts.preprocessing.letterbox_kernel import GpuLetterboxer

    pool = DeviceSlotPool(device, (3, SIZE, SIZE), np.float32, 4)
    letterboxer = GpuLetterboxer(device, (SIZE, SIZE))
    yield pool, letterboxer
    letterboxer.close()
    pool.close()


def frames(n: int, seed: int = 5):
    source = SyntheticSource(width=640, height=480, seed=seed, defect_probability=0.5, realtime=False)
    return [source.render(k).image for k in range(n)]


def run_gpu(gpu_backend, gpu_slots, images):
    pool, letterboxer = gpu_slots
    slots = [pool.acquire(1.0) for _ in images]
    try:
        geometries = [letterboxer(image, slot.array) for image, slot in zip(images, slots)]
        return gpu_backend.infer_tensors([slot.array for slot in slots]).copy(), geometries
    finally:
        for slot in slots:
            slot.release()


def run_cpu(cpu_backend, images):
    letterboxer = Letterboxer((SIZE, SIZE))
    tensors = [np.empty((3, SIZE, SIZE), np.float32) for _ in images]
    geometries = [letterboxer(image, t) for image, t in zip(images, tensors)]
    return cpu_backend.infer_tensors(tensors).copy(), geometries


@pytest.mark.timeout(300)
@pytest.mark.parametrize("batch", [1, 3])
def test_io_binding_output_equals_cpu_backend(cpu_backend, gpu_backend, gpu_slots, batch):
    images = frames(batch)
    gpu_out, _ = run_gpu(gpu_backend, gpu_slots, images)
    cpu_out, _ = run_cpu(cpu_backend, images)
    k = min(model_config().max_candidates, 3380)  # the demo model has 3380 anchors at 416
    assert gpu_out.shape == cpu_out.shape == (batch, k, 6)
    # Inputs differ by at most 1/255 (kernel vs OpenCV) and cuDNN sums in another order, so
    # near-equal scores may swap rows; each column of scores is sorted best first, and the
    # i-th best of two score vectors differs by at most their largest difference.
    assert np.abs(gpu_out[..., 4] - cpu_out[..., 4]).max() <= 0.02


@pytest.mark.timeout(300)
def test_same_verdicts_as_cpu_backend_on_the_same_frames(cpu_backend, gpu_backend, gpu_slots):
    names = cpu_backend.class_names
    rules = RuleBook(RulesConfig(), names)
    agree, total = 0, 0
    for images in (frames(4, seed) for seed in range(6)):
        outputs = [run_gpu(gpu_backend, gpu_slots, images), run_cpu(cpu_backend, images)]
        verdicts = []
        for raw, geometries in outputs:
            dets = [to_detections(d, g) for d, g in zip(decode_candidates(raw, 0.25, 0.45, 100), geometries)]
            verdicts.append([rules.judge(d, None).outcome for d in dets])
        agree += sum(a == b for a, b in zip(*verdicts))
        total += len(images)
    assert agree == total, f"{total - agree} of {total} verdicts differ between CUDA and CPU"
