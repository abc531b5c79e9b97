"""The whole pipeline on the GPU (fused letterbox kernel -> ONNX Runtime CUDA with IO
binding -> rules -> ZeroMQ), checked by an independent subscriber."""

from __future__ import annotations

import pytest

from pipeline.composition.app import Pipeline
from pipeline.composition.assembly import build_parts
from tests.pipeline_helpers import (
    DEMO_MODEL,
    VerdictCollector,
    assert_exactly_once,
    make_config,
)

pytestmark = pytest.mark.timeout(180)


def gpu_model() -> dict:
    import onnxruntime as ort

    side = ort.InferenceSession(str(DEMO_MODEL), providers=["CPUExecutionProvider"]).get_inputs()[0].shape[3]
    return {"backend": "onnxruntime-cuda", "preprocess": "gpu", "max_batch": 2, "max_wait_us": 500,
            "input_size": side if isinstance(side, int) else 320}


def test_gpu_pipeline_gives_every_frame_exactly_one_verdict(device, cuda_provider, free_tcp_endpoint):
    frames = 40
    collector = VerdictCollector(free_tcp_endpoint)
    try:
        config = make_config(free_tcp_endpoint, cameras=2, fps=60, model=gpu_model())
        parts = build_parts(config)
        assert type(parts.slot_pool).__name__ == "DeviceSlotPool"
        pipeline = Pipeline(config, parts, max_frames=frames)
        pipeline.start()
        for capture in pipeline.captures:
            capture.thread.join(60)
        assert pipeline.shutdown(timeout_s=10) == 0
        assert collector.wait_for({"cam0": frames, "cam1": frames}, timeout_s=10)
    finally:
        collector.close()
    for cam in ("cam0", "cam1"):
        verdicts = collector.verdicts[cam]
        assert_exactly_once(verdicts, frames)
        inspected = [v for v in verdicts if v["verdict"] in ("PASS", "FAIL")]
        assert len(inspected) >= frames // 2
    assert collector.heartbeats[-1]["backend"].startswith("onnxruntime:CUDAExecutionProvider")

