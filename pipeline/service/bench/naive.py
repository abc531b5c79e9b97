"""The naive sequential loop: the pattern a user would write first.

Owns the per-frame work as it is usually written: OpenCV resize, pad, colour conversion
and a float copy on the CPU, allocating fresh arrays for every frame; `session.run` on
host numpy arrays (ONNX Runtime on the config's backend's provider, batch 1, no IO binding, no
CUDA graph); the same YOLO decode as the pipeline. `SequentialLoop` adds the rule book
and the ZeroMQ publish, one frame at a time on one thread.
"""

from __future__ import annotations

import time

import cv2
import numpy as np

from pipeline.composition.assembly import make_decoder
from pipeline.config.model import ModelConfig, OnnxRuntimeConfig, OnnxRuntimeCpuConfig, OnnxRuntimeCudaConfig
from pipeline.config.model_common import converted
from pipeline.core.messages import Geometry
from pipeline.parts.backends.onnxruntime_backend import OnnxRuntimeBackend
from pipeline.service.bench.runner import Progress, RunResult
from pipeline.service.bench.sequential import SequentialLoop

PAD_VALUE = 114


def naive_letterbox(image: np.ndarray, width: int, height: int) -> tuple[np.ndarray, Geometry]:
    """(1, 3, height, width) float32 RGB in [0, 1], allocated afresh, plus its geometry."""
    src_h, src_w = image.shape[:2]
    scale = min(width / src_w, height / src_h)
    nw, nh = round(src_w * scale), round(src_h * scale)
    left, top = (width - nw) // 2, (height - nh) // 2
    canvas = np.full((height, width, 3), PAD_VALUE, np.uint8)
    canvas[top:top + nh, left:left + nw] = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_LINEAR)
    rgb = cv2.cvtColor(canvas, cv2.COLOR_BGR2RGB)
    tensor = np.ascontiguousarray((rgb.astype(np.float32) / 255.0).transpose(2, 0, 1)[None])
    return tensor, Geometry(scale, float(left), float(top), src_w, src_h)


def naive_model(model: ModelConfig) -> OnnxRuntimeConfig:
    """The config's model on its ONNX Runtime backend at batch 1 without CUDA graphs; a
    TensorRT or auto config's model on ONNX Runtime's CPU provider."""
    if isinstance(model, OnnxRuntimeCudaConfig):
        return model.model_copy(update={"max_batch": 1, "cuda_graph": False})
    return converted(model, OnnxRuntimeCpuConfig, max_batch=1)


def run_naive(loop: SequentialLoop, progress: Progress) -> RunResult:
    model = naive_model(loop.config.model)
    backend = OnnxRuntimeBackend.from_config(model)
    try:
        backend.warmup(model.warmup_runs)
        width, height = backend.input_size
        decoder = make_decoder(model, backend)
        dtype = backend.input_dtype

        def process(image):
            tensor, geometry = naive_letterbox(image, width, height)
            preprocessed = time.monotonic_ns()
            raw = backend.infer(tensor.astype(dtype, copy=False))
            detections = decoder(raw, geometry)
            return detections, (("preprocess", preprocessed), ("infer", time.monotonic_ns()))

        return loop.run(process, progress, f"naive {backend.name}")
    finally:
        backend.close()
