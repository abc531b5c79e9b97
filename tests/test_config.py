"""Config loading: good files load frozen; bad ones name file, line, key, value, expectation."""

import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from pipeline.config import ConfigError, load_config, parse_config

GOOD = """\
cameras:
  - id: cam0
    source: {kind: synthetic, seed: 3}
    width: 640
    height: 480
model:
  path: engines/demo.onnx
  input_size: 320
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "line.yaml"
    path.write_text(text)
    return path


def test_good_config_loads_frozen_with_defaults():
    cfg = parse_config(GOOD)
    assert cfg.budget_ms == 30 and cfg.model.input_size == (320, 320)
    assert cfg.cameras[0].source.seed == 3
    with pytest.raises(ValidationError):
        cfg.cameras[0].fps = 5  # frozen


def test_misspelt_key_is_named_with_its_line(tmp_path):
    path = write(tmp_path, GOOD.replace("height: 480", "hieght: 480"))
    with pytest.raises(ConfigError) as err:
        load_config(path)
    msg = str(err.value)
    assert str(path) in msg and "cameras.0.hieght" in msg and "(line 5)" in msg and "unknown key" in msg


def test_bad_value_names_value_and_expectation():
    with pytest.raises(ConfigError) as err:
        parse_config(GOOD.replace("input_size: 320", "input_size: 300"), source="x.yaml")
    msg = str(err.value)
    assert "model.input_size" in msg and "300" in msg and "multiple of 32" in msg


def test_unknown_source_kind_lists_the_known_ones():
    with pytest.raises(ConfigError) as err:
        parse_config(GOOD.replace("kind: synthetic", "kind: webcam"))
    assert "webcam" in str(err.value) and "synthetic" in str(err.value)


def test_missing_section_and_bad_yaml():
    with pytest.raises(ConfigError, match="model: required key is missing"):
        parse_config("cameras: [{id: a, source: {kind: synthetic}}]")
    with pytest.raises(ConfigError, match="not valid YAML"):
        parse_config("cameras: [")
    with pytest.raises(ConfigError, match="cannot read"):
        load_config("/nonexistent/line.yaml")


def test_duplicate_camera_ids_are_refused():
    doubled = GOOD.replace("model:", "  - id: cam0\n    source: {kind: synthetic}\nmodel:")
    with pytest.raises(ConfigError, match="unique"):
        parse_config(doubled)


def test_mm2_rules_need_mm_per_px():
    text = GOOD + "rules:\n  default: {min_area_mm2: 2}\n"
    with pytest.raises(ConfigError, match="mm_per_px"):
        parse_config(text)


@pytest.mark.timeout(60)
def test_check_config_cli_exits_2_without_traceback(tmp_path):
    path = write(tmp_path, GOOD.replace("width: 640", "widht: 640"))
    proc = subprocess.run([sys.executable, "-m", "pipeline", "check-config", "--no-model", str(path)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "widht" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.timeout(60)
def test_check_config_cli_accepts_a_good_file(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "pipeline", "check-config", "--no-model", str(write(tmp_path, GOOD))],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "OK" in proc.stdout


def test_cuda_graph_with_batches_is_accepted():
    # one graph per batch size, all captured in warm-up (pipeline.backends.onnxruntime_cuda)
    text = GOOD.replace("input_size: 320", "input_size: 320\n  providers: [CUDAExecutionProvider]\n  cuda_graph: true\n"
                        "  max_batch: 4")
    config = parse_config(text)
    assert config.model.cuda_graph and config.model.max_batch == 4


@pytest.mark.parametrize("keys, message", [
    ("backend: tensorrt\n  cuda_graph: true", "model.cuda_graph does not apply to backend tensorrt"),
    ("backend: tensorrt\n  threads: 4", "model.threads does not apply to backend tensorrt"),
    ("backend: onnxruntime\n  engine_mismatch: rebuild", "model.engine_mismatch does not apply to backend onnxruntime"),
    ("backend: onnxruntime\n  allow_cpu_fallback: true", "model.allow_cpu_fallback does not apply to backend onnxruntime"),
    ("cuda_graph: true", r"model.cuda_graph applies to ONNX Runtime on CUDA only; providers is \['CPUExecutionProvider'\]"),
])
def test_a_key_of_another_backend_is_an_error_naming_the_backend(keys, message):
    with pytest.raises(ConfigError, match=message):
        parse_config(GOOD.replace("input_size: 320", f"input_size: 320\n  {keys}"))


def test_auto_takes_the_keys_of_every_backend_it_may_choose():
    text = GOOD.replace("input_size: 320", "input_size: 320\n  backend: auto\n  engine_mismatch: rebuild\n"
                        "  cuda_graph: true\n  allow_cpu_fallback: true")
    assert parse_config(text).model.allow_cpu_fallback


def test_source_kinds_are_defined_once_and_the_registry_covers_them():
    from pipeline.config.models import SOURCE_KINDS
    from pipeline.sources import SOURCES

    assert set(SOURCES) == set(SOURCE_KINDS) == {"synthetic", "replay", "opencv", "genicam"}
