"""`model.backend: triton` in the config: its section is required with it and only with it,
and the backend is chosen through the registry without importing tritonclient early."""

from __future__ import annotations

import subprocess
import sys

import pytest
from pydantic import ValidationError

from pipeline.config.model import ModelConfig, TritonConfig, model_config
from pipeline.parts.backends import BACKENDS
from pipeline.parts.backends.triton_backend import use_shared_memory
from pipeline.parts.modelfile.model_info import ModelError
from tests.pipeline_helpers import DEMO_MODEL, ROOT


def model(**kw) -> ModelConfig:
    return model_config(path=DEMO_MODEL, input_size=416, **kw)


def test_backend_triton_needs_its_section_and_only_it_has_one():
    with pytest.raises(ValidationError, match=r"triton\.triton\n  Field required"):
        model(backend="triton")
    with pytest.raises(ValidationError, match=r"onnxruntime\.triton\n  Extra inputs are not permitted"):
        model(triton={"model_name": "demo"})
    assert model(backend="triton", triton={"model_name": "demo"}).triton.url == "127.0.0.1:8001"


@pytest.mark.parametrize("url", ["grpc://host:8001", "host", "host:port", "a b:1"])
def test_url_is_host_and_port_without_scheme(url):
    with pytest.raises(ValidationError):
        TritonConfig(model_name="demo", url=url)


@pytest.mark.parametrize("url,mode,expected", [("127.0.0.1:8001", "auto", True), ("localhost:1", "auto", True),
                                               ("triton.svc:8001", "auto", False), ("127.0.0.1:8001", "none", False),
                                               ("triton.svc:8001", "system", True)])
def test_shared_memory_only_on_the_same_host_unless_forced(url, mode, expected):
    assert use_shared_memory(TritonConfig(model_name="demo", url=url, shared_memory=mode)) is expected


def test_registry_names_triton_and_import_pipeline_does_not_load_tritonclient():
    assert BACKENDS["triton"] == "pipeline.parts.backends.triton_backend:TritonBackend"
    code = "import sys, pipeline.parts.backends, pipeline.composition.assembly; assert 'tritonclient' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_demo_triton_config_loads_without_opening_a_local_model(tmp_path):
    from pipeline.config.loader import load_config

    config = load_config(ROOT / "configs" / "demo-triton.yaml", require_model=True)
    assert config.model.triton.model_name == "demo" and config.model.on_backend_error.action == "continue"
    moved = tmp_path / "elsewhere.yaml"  # its model.path points nowhere from here: fine for triton
    moved.write_text((ROOT / "configs" / "demo-triton.yaml").read_text())
    assert load_config(moved, require_model=True).model.backend.value == "triton"


HEADED_METADATA = {"inputs": [{"name": "images", "datatype": "FP32", "shape": [-1, 3, 416, 416]}],
                   "outputs": [{"name": "candidates", "datatype": "FP32", "shape": [-1, 3000, 6]}]}


def served(metadata: dict, parameters: dict[str, str]):
    """What the Triton backend makes of a server's metadata and config (no request is sent)."""
    pytest.importorskip("tritonclient.grpc", reason="the `triton` extra is not installed")
    from pipeline.parts.backends.triton_backend import _check_model
    from pipeline.parts.backends.triton_connection import TritonConnection

    cfg = model(backend="triton", triton={"model_name": "demo"})
    conn = TritonConnection(cfg.triton.url, "grpc", "demo", "", 1.0)  # never connected here
    config = {"max_batch_size": 8, "parameters": {k: {"string_value": v} for k, v in parameters.items()}}
    return _check_model(conn, metadata, config, cfg), conn


def test_a_served_graph_with_the_candidate_head_is_recognised_by_its_parameters():
    names = "{0: 'scratch', 1: 'spot', 2: 'crack'}"
    result, conn = served(HEADED_METADATA, {"names": names, "pipeline.candidate_head.k": "3000",
                                            "pipeline.candidate_head.raw_output": '["output0", ["batch", 7, 3380]]'})
    assert (result.head_k, result.class_names) == (3000, ("scratch", "spot", "crack"))
    assert conn.output.dims == (3000, 6)
    # the raw output it reads is what the class-count check sees: 4 names do not fit 4 + 3
    with pytest.raises(ModelError, match=r"no axis of 4 \+ 4 = 8 for the 4 class names"):
        served(HEADED_METADATA, {"names": "{0: 'a', 1: 'b', 2: 'c', 3: 'd'}", "pipeline.candidate_head.k": "3000",
                                 "pipeline.candidate_head.raw_output": '["output0", ["batch", 7, 3380]]'})


def test_without_the_parameter_the_output_is_the_raw_one():
    raw = {**HEADED_METADATA, "outputs": [{"name": "output0", "datatype": "FP32", "shape": [-1, 7, 3380]}]}
    result, _ = served(raw, {"names": "{0: 'scratch', 1: 'spot', 2: 'crack'}"})
    assert result.head_k is None


def test_an_output_that_is_not_what_the_head_parameter_promises_is_refused():
    raw = {**HEADED_METADATA, "outputs": [{"name": "output0", "datatype": "FP32", "shape": [-1, 7, 3380]}]}
    with pytest.raises(ModelError, match=r"parameter pipeline.candidate_head.k is '3000', but output 'output0' is "
                                         r"\[-1, 7, 3380\], not \(batch, K, 6\)"):
        served(raw, {"pipeline.candidate_head.k": "3000"})
