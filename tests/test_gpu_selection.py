"""Choosing the GPU path from the config, on a machine without a GPU: the CPU path stays
the default, and asking for GPU preprocessing with a host backend is a clear start-up
error, not a traceback."""

from __future__ import annotations

import pytest

from pipeline.composition.app import StartupError
from pipeline.composition.assembly import build_parts
from pipeline.service.cli import main
from tests.pipeline_helpers import DEMO_MODEL, make_config


def model_side() -> int:
    import onnxruntime as ort

    side = ort.InferenceSession(str(DEMO_MODEL), providers=["CPUExecutionProvider"]).get_inputs()[0].shape[3]
    return side if isinstance(side, int) else 320


@pytest.mark.timeout(60)
def test_preprocess_gpu_with_a_host_backend_is_a_startup_error(free_tcp_endpoint):
    config = make_config(free_tcp_endpoint, model={"preprocess": "gpu", "input_size": model_side()})
    with pytest.raises(StartupError, match="model.preprocess: gpu needs a GPU-resident backend"):
        build_parts(config)


@pytest.mark.timeout(60)
def test_auto_preprocess_on_the_cpu_backend_keeps_host_slots(free_tcp_endpoint):
    config = make_config(free_tcp_endpoint, model={"preprocess": "auto", "input_size": model_side()},
                         publisher={"await_subscriber_ms": 0})
    parts = build_parts(config)
    try:
        assert parts.slot_pool is None and type(parts.transform).__name__ == "Letterboxer"
    finally:
        parts.publisher.close()
        parts.backend.close()
        parts.context.term()


@pytest.mark.timeout(60)
def test_build_engine_without_tensorrt_exits_2_with_a_message(capsys):
    try:
        import tensorrt  # noqa: F401
        pytest.skip("TensorRT is installed here")
    except ImportError:
        pass
    assert main(["build-engine", str(DEMO_MODEL)]) == 2
    assert "TensorRT is not installed here" in capsys.readouterr().err
