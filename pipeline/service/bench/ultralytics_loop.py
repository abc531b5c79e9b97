"""Ultralytics' streaming predict, on the same frames and model, when it is installed.

Owns the comparison with what an ML engineer would otherwise deploy:
`YOLO(model.onnx).predict(frame, stream=True)` per frame (its own letterbox, its own
ONNX Runtime session through AutoBackend, its own NMS), then the same rule book and
ZeroMQ publish as every other system (`SequentialLoop`). `ultralytics` is optional and
never a dependency: `unavailable()` says why it cannot run here, and the bench reports
it as skipped with that reason.
"""

from __future__ import annotations

import importlib.util
import time

import numpy as np

from pipeline.config.model import ModelConfig
from pipeline.config.model_common import CudaDeviceKeys
from pipeline.core.messages import Detections
from pipeline.service.bench.runner import Progress, RunResult
from pipeline.service.bench.sequential import SequentialLoop


def unavailable() -> str | None:
    """Why Ultralytics cannot be measured here, or None when it can."""
    if importlib.util.find_spec("ultralytics") is None:
        return "the optional package `ultralytics` is not installed (pip install ultralytics)"
    try:
        import ultralytics  # noqa: F401  # it imports torch: a broken install fails here
    except Exception as exc:  # noqa: BLE001 - any import failure is a reason to skip
        return f"`import ultralytics` failed: {type(exc).__name__}: {exc}"
    return None


def _device(model: ModelConfig) -> str:
    """Ultralytics' device: the config's GPU when its backend runs on one."""
    return str(model.device_id) if isinstance(model, CudaDeviceKeys) else "cpu"


def run_ultralytics(loop: SequentialLoop, progress: Progress) -> RunResult:
    from ultralytics import YOLO

    model_cfg = loop.config.model
    model = YOLO(str(model_cfg.path), task="detect")
    width, height = model_cfg.input_size
    options = dict(stream=True, imgsz=(height, width), conf=model_cfg.confidence, iou=model_cfg.iou,
                   max_det=model_cfg.max_detections, device=_device(model_cfg), verbose=False)
    first = next(iter(loop.frames.values()))[0].image
    for _ in range(max(1, model_cfg.warmup_runs)):  # its predictor and session are built lazily
        for _result in model.predict(first, **options):
            pass

    def process(image):
        detections = Detections.empty()
        for result in model.predict(image, **options):
            boxes = result.boxes
            detections = Detections(boxes.xyxy.cpu().numpy().astype(np.float32),
                                    boxes.conf.cpu().numpy().astype(np.float32),
                                    boxes.cls.cpu().numpy().astype(np.int64))
        return detections, (("predict", time.monotonic_ns()),)

    import ultralytics

    return loop.run(process, progress, f"ultralytics {ultralytics.__version__} ({options['device']})")
