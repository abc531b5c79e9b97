"""`model.backend: triton` in the config: its section is required with it and only with it,
and the backend is chosen through the registry without importing tritonclient early."""

from __future__ import annotations

import subprocess
import sys

import pytest
from pydantic import ValidationError

from pipeline.backends import BACKENDS
from pipeline.backends.triton_backend import use_shared_memory
from pipeline.config.model import ModelConfig, TritonConfig, model_config
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
    assert BACKENDS["triton"] == "pipeline.backends.triton_backend:TritonBackend"
    code = "import sys, pipeline.backends, pipeline.assembly; assert 'tritonclient' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_demo_triton_config_loads_without_opening_a_local_model(tmp_path):
    from pipeline.config.loader import load_config

    config = load_config(ROOT / "configs" / "demo-triton.yaml", require_model=True)
    assert config.model.triton.model_name == "demo" and config.model.on_backend_error.action == "continue"
    moved = tmp_path / "elsewhere.yaml"  # its model.path points nowhere from here: fine for triton
    moved.write_text((ROOT / "configs" / "demo-triton.yaml").read_text())
    assert load_config(moved, require_model=True).model.backend.value == "triton"
