"""`pipeline export-triton`: the repository's layout, and its `config.pbtxt` as Triton's
own protobuf definition (tritonclient's model_config_pb2) parses it. That the output
also loads and serves in a real server is tests/test_triton_server.py's fixture."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

mc = pytest.importorskip("tritonclient.grpc.model_config_pb2", reason="the `triton` extra is not installed")
from google.protobuf import text_format  # noqa: E402

from pipeline.parts.engines.sidecar import EngineSidecar, TensorSpec, sidecar_path  # noqa: E402
from pipeline.parts.modelfile.model_info import parse_names  # noqa: E402
from tests.pipeline_helpers import DEMO_MODEL  # noqa: E402


def export(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline", "export-triton", *args],
                          capture_output=True, text=True, timeout=120)


def parsed(folder: Path):
    return text_format.Parse((folder / "config.pbtxt").read_text(), mc.ModelConfig())


def test_onnx_export_for_the_official_container(tmp_path):
    done = export(str(DEMO_MODEL), str(tmp_path), "--max-batch", "4", "--preferred-batch", "2", "4",
                  "--instances", "2", "--gpu")
    assert done.returncode == 0, done.stderr
    folder = tmp_path / "demo"
    config = parsed(folder)
    assert (config.name, config.backend, config.max_batch_size) == ("demo", "onnxruntime", 4)
    (inp,), (out,) = config.input, config.output
    assert (inp.name, list(inp.dims), inp.data_type) == ("images", [3, 416, 416], mc.TYPE_FP32)
    # the candidate head the local backends append, K = 3000 (of the demo's 3380 anchors)
    assert (out.name, list(out.dims), out.data_type) == ("candidates", [3000, 6], mc.TYPE_FP32)
    assert config.parameters["pipeline.candidate_head.k"].string_value == "3000"
    assert json.loads(config.parameters["pipeline.candidate_head.raw_output"].string_value) == \
        ["output0", ["batch", 7, 3380]]
    assert list(config.dynamic_batching.preferred_batch_size) == [2, 4]
    assert config.dynamic_batching.max_queue_delay_microseconds == 2000
    (group,) = config.instance_group
    assert (group.count, group.kind) == (2, mc.ModelInstanceGroup.KIND_GPU)
    assert parse_names(config.parameters["names"].string_value) == ("scratch", "spot", "crack")


def test_the_served_onnx_graph_is_the_local_backends_headed_graph(tmp_path):
    """The file in the repository answers exactly what ONNX Runtime in-process answers with
    the head: the same K x 6 rows for the same image."""
    import onnxruntime as ort

    from pipeline.config.model import OnnxRuntimeCpuConfig
    from pipeline.parts.backends.onnxruntime_backend import OnnxRuntimeBackend

    done = export(str(DEMO_MODEL), str(tmp_path), "--max-candidates", "500")
    assert done.returncode == 0, done.stderr
    assert "candidate head K=500" in done.stdout
    served = ort.InferenceSession(str(tmp_path / "demo" / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    local = OnnxRuntimeBackend.from_config(OnnxRuntimeCpuConfig(path=DEMO_MODEL, input_size=416, max_candidates=500))
    image = np.random.default_rng(3).random((1, 3, 416, 416), np.float32)
    try:
        rows = served.run(None, {"images": image})[0]
        assert rows.shape == (1, 500, 6)
        np.testing.assert_array_equal(rows, local.infer(image))
    finally:
        local.close()


def test_raw_output_serves_the_graph_as_it_is(tmp_path):
    done = export(str(DEMO_MODEL), str(tmp_path), "--raw-output")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "demo" / "1" / "model.onnx").read_bytes() == DEMO_MODEL.read_bytes()
    config = parsed(tmp_path / "demo")
    assert (config.output[0].name, list(config.output[0].dims)) == ("output0", [7, 3380])
    assert "pipeline.candidate_head.k" not in config.parameters


def test_python_platform_carries_the_runner_and_no_batcher_at_batch_1(tmp_path):
    done = export(str(DEMO_MODEL), str(tmp_path), "--platform", "python", "--max-batch", "1", "--name", "line_a")
    assert done.returncode == 0, done.stderr
    config = parsed(tmp_path / "line_a")
    assert (config.name, config.backend) == ("line_a", "python")
    assert not config.HasField("dynamic_batching")
    assert config.instance_group[0].kind == mc.ModelInstanceGroup.KIND_CPU
    assert "TritonPythonModel" in (tmp_path / "line_a" / "1" / "model.py").read_text()


def test_tensorrt_plan_from_its_sidecar(tmp_path):
    plan = tmp_path / "demo.engine"
    plan.write_bytes(b"serialized plan")  # the exporter copies it; it never parses the plan
    EngineSidecar("10.9", "NVIDIA H200", "9.0", str(DEMO_MODEL), "0" * 64, "fp16",
                  {"input": "images", "min": [1, 3, 416, 416], "opt": [8, 3, 416, 416], "max": [8, 3, 416, 416]},
                  (TensorSpec("images", (-1, 3, 416, 416), "float32"),),
                  (TensorSpec("candidates", (-1, 100, 6), "float32"),), ("scratch", "spot", "crack"),
                  build={"max_candidates": 100}).write(sidecar_path(plan))
    done = export(str(plan), str(tmp_path / "repo"))
    assert done.returncode == 0, done.stderr
    config = parsed(tmp_path / "repo" / "demo")
    assert config.platform == "tensorrt_plan" and config.instance_group[0].kind == mc.ModelInstanceGroup.KIND_GPU
    assert list(config.output[0].dims) == [100, 6]
    assert config.parameters["pipeline.candidate_head.k"].string_value == "100"  # compiled in by build-engine
    assert "pipeline.candidate_head.raw_output" not in config.parameters
    assert (tmp_path / "repo" / "demo" / "1" / "model.plan").read_bytes() == b"serialized plan"


@pytest.mark.parametrize("args,message", [(["missing.onnx"], "model file not found"),
                                          ([str(DEMO_MODEL), "--platform", "tensorrt"], "needs a TensorRT plan")])
def test_unusable_input_is_named_with_exit_2(tmp_path, args, message):
    done = export(args[0], str(tmp_path), *args[1:])
    assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr


def test_a_plan_without_sidecar_is_refused(tmp_path):
    plan = tmp_path / "x.engine"
    plan.write_bytes(b"x")
    done = export(str(plan), str(tmp_path / "repo"))
    assert done.returncode == 2 and "sidecar not found" in done.stderr
