"""Config loading: good files load frozen; bad ones name file, line, key, value, expectation."""

import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from pipeline.config import ConfigError, load_config, parse_config
from pipeline.config.model import (
    AutoConfig,
    OnnxRuntimeCpuConfig,
    OnnxRuntimeCudaConfig,
    TensorRTConfig,
    TritonModelConfig,
)

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


def test_queue_sizes_left_out_follow_the_cameras_and_the_batch():
    one = parse_config(GOOD)
    assert (one.queues.preprocess.size, one.queues.infer.size) == (4, 4)  # one camera, batch 1: the default
    cams = "".join(f"  - id: cam{i}\n    source: {{kind: synthetic}}\n    width: 640\n    height: 480\n" for i in range(8))
    text = GOOD.split("cameras:")[0] + "cameras:\n" + cams + "model:\n  path: engines/demo.onnx\n  max_batch: 8\n"
    line = parse_config(text)
    assert (line.queues.preprocess.size, line.queues.infer.size) == (16, 16)  # 8 frames at once, batches of 8
    kept = parse_config(text + "queues:\n  preprocess: {overflow: block}\n  infer: {size: 9}\n")
    assert (kept.queues.preprocess.size, kept.queues.infer.size) == (16, 9)  # what the file says stays
    assert kept.queues.preprocess.overflow.value == "block"


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
    # one graph per batch size, all captured in warm-up (pipeline.parts.backends.onnxruntime_cuda)
    text = GOOD.replace("input_size: 320", "input_size: 320\n  backend: onnxruntime-cuda\n  cuda_graph: true\n"
                        "  max_batch: 4")
    config = parse_config(text)
    assert isinstance(config.model, OnnxRuntimeCudaConfig)
    assert config.model.cuda_graph and config.model.max_batch == 4


@pytest.mark.parametrize("backend, config_class", [
    (None, OnnxRuntimeCpuConfig), ("onnxruntime", OnnxRuntimeCpuConfig), ("onnxruntime-cuda", OnnxRuntimeCudaConfig),
    ("tensorrt", TensorRTConfig), ("auto", AutoConfig)])
def test_the_backend_picks_its_config_class(backend, config_class):
    keys = f"input_size: 320\n  backend: {backend}" if backend else "input_size: 320"
    assert type(parse_config(GOOD.replace("input_size: 320", keys)).model) is config_class


@pytest.mark.parametrize("keys, key, backend, readers", [
    ("backend: tensorrt\n  cuda_graph: true", "cuda_graph", "tensorrt", "onnxruntime-cuda or auto"),
    ("backend: tensorrt\n  threads: 4", "threads", "tensorrt", "onnxruntime or onnxruntime-cuda or auto"),
    ("backend: onnxruntime\n  engine_mismatch: rebuild", "engine_mismatch", "onnxruntime", "tensorrt or auto"),
    ("engine_path: x.engine", "engine_path", "onnxruntime", "tensorrt or auto"),  # no backend: onnxruntime
    ("backend: onnxruntime\n  allow_cpu_fallback: true", "allow_cpu_fallback", "onnxruntime", "auto"),
    ("cuda_graph: true", "cuda_graph", "onnxruntime", "onnxruntime-cuda or auto"),
    ("backend: onnxruntime-cuda\n  engine_mismatch: refuse", "engine_mismatch", "onnxruntime-cuda", "tensorrt or auto"),
    ("backend: auto\n  triton: {model_name: demo}", "triton", "auto", "triton"),
    ("backend: triton\n  triton: {model_name: demo}\n  device_id: 1", "device_id", "triton",
     "onnxruntime-cuda or tensorrt or auto"),
])
def test_a_key_of_another_backend_is_an_error_naming_the_backend_and_the_key(keys, key, backend, readers):
    # set to its default value too: a key the backend never reads is a mistake either way
    with pytest.raises(ConfigError) as err:
        parse_config(GOOD.replace("input_size: 320", f"input_size: 320\n  {keys}"))
    line = 9 + keys.count("\n")
    assert f"model.{key} (line {line}): does not apply to backend {backend} (it is read only by backend " \
           f"{readers})" in str(err.value)


def test_an_unknown_backend_lists_the_known_ones():
    with pytest.raises(ConfigError, match=r"model \(line 7\): unknown backend 'onnx'; expected one of "
                                          r"'onnxruntime', 'onnxruntime-cuda', 'tensorrt', 'triton', 'auto'"):
        parse_config(GOOD.replace("input_size: 320", "input_size: 320\n  backend: onnx"))


def test_the_replaced_providers_key_says_what_to_write_instead():
    with pytest.raises(ConfigError, match=r"model \(line 7\): model.providers is replaced by the backend's name: "
                                          r"backend onnxruntime runs ONNX Runtime on the CPU, backend "
                                          r"onnxruntime-cuda on CUDA"):
        parse_config(GOOD.replace("input_size: 320", "input_size: 320\n  providers: [CUDAExecutionProvider]"))


def test_triton_needs_its_section_but_no_model_path(tmp_path):
    with pytest.raises(ConfigError, match=r"model.triton \(line 7\): required key is missing"):
        parse_config(GOOD.replace("input_size: 320", "input_size: 320\n  backend: triton"))
    served = GOOD.replace("  path: engines/demo.onnx\n", "").replace(
        "input_size: 320", "input_size: 320\n  backend: triton\n  triton: {model_name: demo}")
    config = load_config(write(tmp_path, served), require_model=True)  # nothing on disk to find
    assert isinstance(config.model, TritonModelConfig) and config.model.path is None
    assert config.model.location == "triton://127.0.0.1:8001/demo"


def test_check_config_names_a_misapplied_key_with_exit_2_and_no_traceback(tmp_path):
    path = write(tmp_path, GOOD.replace("input_size: 320", "input_size: 320\n  backend: tensorrt\n  cuda_graph: true"))
    proc = subprocess.run([sys.executable, "-m", "pipeline", "check-config", "--no-model", str(path)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "model.cuda_graph (line 10): does not apply to backend tensorrt" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_auto_takes_the_keys_of_every_backend_it_may_choose_and_hands_each_only_its_own():
    text = GOOD.replace("input_size: 320", "input_size: 320\n  backend: auto\n  engine_mismatch: rebuild\n"
                        "  cuda_graph: true\n  allow_cpu_fallback: true\n  threads: 3")
    auto = parse_config(text).model
    assert isinstance(auto, AutoConfig) and auto.allow_cpu_fallback
    trt, cuda, cpu = auto.tensorrt(), auto.onnxruntime_cuda(), auto.onnxruntime_cpu()
    assert (type(trt), trt.engine_mismatch, trt.input_size) == (TensorRTConfig, "rebuild", (320, 320))
    assert (type(cuda), cuda.cuda_graph, cuda.threads) == (OnnxRuntimeCudaConfig, True, 3)
    assert (type(cpu), cpu.threads, cpu.path) == (OnnxRuntimeCpuConfig, 3, auto.path)


SHIPPED = Path(__file__).resolve().parents[1] / "configs"


@pytest.mark.parametrize("name", sorted(p.name for p in SHIPPED.glob("*.yaml") if p.name != "gateway.yaml"))
def test_every_shipped_pipeline_config_loads(name):
    config = load_config(SHIPPED / name)
    assert config.model.backend.value in {"onnxruntime", "onnxruntime-cuda", "triton"}


def test_source_kinds_are_defined_once_and_the_registry_covers_them():
    from pipeline.config.sources import SOURCE_KINDS
    from pipeline.parts.sources import SOURCES

    assert set(SOURCES) == set(SOURCE_KINDS) == {"synthetic", "replay", "opencv", "genicam"}


@pytest.mark.parametrize("source", ["{kind: opencv, uri: '0'", "{kind: genicam, address: 192.0.2.10"])
def test_a_reconnect_ceiling_below_the_first_wait_is_refused_for_every_reconnecting_source(source):
    text = GOOD.replace("{kind: synthetic, seed: 3}", source + ", reconnect_initial_s: 3, reconnect_max_s: 1}")
    with pytest.raises(ConfigError, match="reconnect_max_s must be >= reconnect_initial_s"):
        parse_config(text)


def test_a_reconnect_ceiling_below_the_first_wait_is_refused_for_triton_as_for_cameras():
    text = GOOD.replace("input_size: 320", "input_size: 320\n  backend: triton\n"
                        "  triton: {model_name: demo, reconnect_initial_s: 3, reconnect_max_s: 1}")
    with pytest.raises(ConfigError, match="reconnect_max_s must be >= reconnect_initial_s"):
        parse_config(text)


def test_triton_keeps_its_own_reconnect_defaults_within_the_shared_bounds():
    triton = parse_config(GOOD.replace(
        "input_size: 320", "input_size: 320\n  backend: triton\n  triton: {model_name: demo}")).model.triton
    assert (triton.reconnect_initial_s, triton.reconnect_max_s) == (0.1, 2.0)
    with pytest.raises(ConfigError, match="reconnect_max_s"):
        parse_config(GOOD.replace("input_size: 320", "input_size: 320\n  backend: triton\n"
                                  "  triton: {model_name: demo, reconnect_max_s: 601}"))


@pytest.mark.parametrize("cpus, expected", [
    ("[2, 2]", "names a CPU twice"),
    ("[]", "at least 1 item"),
    ("[-1]", "greater than or equal to 0"),
])
def test_runtime_cpus_refuses_a_list_no_machine_could_run(cpus, expected):
    with pytest.raises(ConfigError) as err:
        parse_config(GOOD + f"runtime: {{cpus: {cpus}}}\n", source="x.yaml")
    assert "runtime.cpus" in str(err.value) and expected in str(err.value)
