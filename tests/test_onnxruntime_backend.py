"""The ONNX Runtime backend and the registry on real ONNX files.

A tiny model is built here with the `onnx` helper API: a 32x32/stride-32 Conv over a
64x64 input whose class rows are the mean red and green of each grid cell, plus a
constant grid of box centres, reshaped to YOLOv8's (N, 4+C, A). So a red square in the
top-left cell is a detection of class "red" at exactly that cell. The shared random
YOLOv8n model is exercised only when present.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from pipeline.config.model import ModelConfig, OnnxRuntimeCpuConfig, OnnxRuntimeCudaConfig, model_config  # noqa: E402
from pipeline.parts.backends import backend_class, choose_backend, create_backend  # noqa: E402
from pipeline.parts.backends.onnxruntime_backend import OnnxRuntimeBackend  # noqa: E402
from pipeline.parts.decoding.yolo_decode import decode_candidates, to_detections  # noqa: E402
from pipeline.parts.modelfile.model_info import ModelError  # noqa: E402
from pipeline.parts.preprocessing import Letterboxer  # noqa: E402

SHARED_YOLOV8N = Path("/work/shared/models/yolov8n-640-random.onnx")
NAMES_METADATA = "{0: 'red', 1: \"green's\"}"


def _grid_bias(num_classes: int) -> np.ndarray:
    bias = np.zeros((1, 4 + num_classes, 2, 2), np.float32)
    bias[0, 0] = [[16, 48], [16, 48]]  # cx per cell
    bias[0, 1] = [[16, 16], [48, 48]]  # cy per cell
    bias[0, 2:4] = 32  # w, h
    return bias


def make_model(
    path: Path, batch: int | str = "N", names: str | None = NAMES_METADATA, transposed: bool = False
) -> Path:
    """Write the tiny two-class detector described in the module docstring."""
    weights = np.zeros((6, 3, 32, 32), np.float32)
    weights[4, 0] = weights[5, 1] = 1 / (32 * 32)  # class rows: mean R and mean G of a cell
    nodes = [
        helper.make_node("Conv", ["images", "W"], ["conv"], kernel_shape=[32, 32], strides=[32, 32]),
        helper.make_node("Add", ["conv", "grid"], ["cells"]),
        helper.make_node("Reshape", ["cells", "shape"], ["out" if transposed else "output0"]),
    ]
    if transposed:
        nodes.append(helper.make_node("Transpose", ["out"], ["output0"], perm=[0, 2, 1]))
    out_shape = [batch, 4, 6] if transposed else [batch, 6, 4]
    graph = helper.make_graph(
        nodes,
        "tiny_yolo",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [batch, 3, 64, 64])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, out_shape)],
        [numpy_helper.from_array(weights, "W"), numpy_helper.from_array(_grid_bias(2), "grid"),
         numpy_helper.from_array(np.array([0, 6, -1], np.int64), "shape")],
    )
    return _save(graph, path, names)


def make_identity_model(path: Path, in_shape: list, out_shape: list) -> Path:
    """An Identity graph with arbitrary declared shapes, for signature errors."""
    graph = helper.make_graph(
        [helper.make_node("Identity", ["images"], ["output0"])],
        "identity",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, in_shape)],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, out_shape)],
    )
    return _save(graph, path, None)


def _save(graph, path: Path, names: str | None) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # readable by every onnxruntime the project supports (>= 1.17)
    if names is not None:
        helper.set_model_props(model, {"names": names})
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def _cfg(path: Path, **changes) -> ModelConfig:
    return model_config(path=path, input_size=(64, 64), threads=1, **changes)


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    return make_model(tmp_path / "tiny.onnx")


def test_loads_tiny_model_with_names_from_metadata(tiny):
    backend = OnnxRuntimeBackend.from_config(_cfg(tiny, max_batch=2))
    assert backend.name == "onnxruntime:CPUExecutionProvider"
    assert backend.class_names == ("red", "green's")
    assert (backend.input_size, backend.input_dtype, backend.max_batch) == ((64, 64), np.float32, 2)


def test_config_names_override_metadata(tiny):
    assert OnnxRuntimeBackend.from_config(_cfg(tiny, class_names=("a", "b"))).class_names == ("a", "b")


def test_generic_names_without_metadata(tmp_path):
    path = make_model(tmp_path / "plain.onnx", names=None)
    assert OnnxRuntimeBackend.from_config(_cfg(path)).class_names == ("class0", "class1")


@pytest.mark.parametrize("transposed", [False, True])
def test_red_square_is_detected_end_to_end(tmp_path, transposed):
    path = make_model(tmp_path / "tiny.onnx", transposed=transposed)
    backend = OnnxRuntimeBackend.from_config(_cfg(path, max_batch=2))
    image = np.zeros((128, 128, 3), np.uint8)
    image[:64, :64] = (0, 0, 255)  # BGR red in the top-left quarter
    batch = np.zeros((2, 3, 64, 64), np.float32)
    geometry = Letterboxer((64, 64))(image, batch[0])
    output = backend.infer(batch)
    assert output.shape == (2, 4, 6)  # the candidate head: K = all 4 anchors of the tiny model
    decoded = decode_candidates(output, 0.5, 0.45, 10)
    detections = to_detections(decoded[0], geometry)
    np.testing.assert_allclose(detections.boxes, [[0, 0, 64, 64]])
    assert detections.class_ids.tolist() == [0] and detections.scores[0] == pytest.approx(1.0)
    assert len(decoded[1][1]) == 0  # the all-black second image has nothing


def test_infer_rejects_a_batch_that_does_not_fit(tiny):
    backend = OnnxRuntimeBackend.from_config(_cfg(tiny, max_batch=2))
    for bad in (np.zeros((3, 3, 64, 64), np.float32), np.zeros((1, 3, 32, 64), np.float32),
                np.zeros((1, 3, 64, 64), np.float64)):
        with pytest.raises(ValueError, match="does not fit"):
            backend.infer(bad)


def test_warmup_then_close(tiny):
    backend = OnnxRuntimeBackend.from_config(_cfg(tiny, max_batch=2))
    backend.warmup(2)
    backend.close()
    backend.close()
    with pytest.raises(RuntimeError, match="closed"):
        backend.infer(np.zeros((1, 3, 64, 64), np.float32))


def test_missing_file(tmp_path):
    with pytest.raises(ModelError, match="not found"):
        OnnxRuntimeBackend.from_config(_cfg(tmp_path / "absent.onnx"))


def test_corrupt_file(tmp_path):
    path = tmp_path / "corrupt.onnx"
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(ModelError, match="corrupt.onnx.*not a usable ONNX model"):
        OnnxRuntimeBackend.from_config(_cfg(path))


@pytest.mark.parametrize(
    ("in_shape", "out_shape", "message"),
    [
        (["N", 3, 64], ["N", 3, 64], "rank 3, expected 4-D NCHW"),
        (["N", 64, 64, 3], ["N", 64, 64, 3], "64 channels"),
        (["N", 3, 64, 64], ["N", 3, 64, 64], "output 'output0'.*rank 4"),
    ],
)
def test_wrong_signature_is_a_model_error(tmp_path, in_shape, out_shape, message):
    path = make_identity_model(tmp_path / "bad.onnx", in_shape, out_shape)
    with pytest.raises(ModelError, match=message):
        OnnxRuntimeBackend.from_config(_cfg(path))


def test_fixed_size_mismatch_says_what_the_model_expects(tiny):
    with pytest.raises(ModelError, match="expects 64x64.*input_size is 128x96"):
        OnnxRuntimeBackend.from_config(_cfg(tiny).model_copy(update={"input_size": (128, 96)}))


def test_fixed_batch_of_one_refuses_max_batch_above_one(tmp_path):
    path = make_model(tmp_path / "b1.onnx", batch=1)
    assert OnnxRuntimeBackend.from_config(_cfg(path)).max_batch == 1
    with pytest.raises(ModelError, match="fixed batch of 1 but model.max_batch is 4"):
        OnnxRuntimeBackend.from_config(_cfg(path, max_batch=4))


def test_class_count_mismatch(tiny):
    with pytest.raises(ModelError, match="3 class names.*2 classes"):
        OnnxRuntimeBackend.from_config(_cfg(tiny, class_names=("a", "b", "c")))


def test_malformed_names_metadata(tmp_path):
    path = make_model(tmp_path / "m.onnx", names="{0: person}")
    with pytest.raises(ModelError, match="metadata 'names' is malformed"):
        OnnxRuntimeBackend.from_config(_cfg(path))


@pytest.mark.skipif("CUDAExecutionProvider" in ort.get_available_providers(), reason="a GPU backend is here")
def test_a_missing_provider_is_named_with_the_available_ones(tiny):
    with pytest.raises(ModelError, match=r"backend onnxruntime-cuda needs \['CUDAExecutionProvider'\], which this "
                                         r"onnxruntime lacks; it has \[.*'CPUExecutionProvider'\].*onnxruntime-gpu"):
        OnnxRuntimeBackend.from_config(OnnxRuntimeCudaConfig(path=tiny, input_size=(64, 64)))


def test_registry_builds_onnxruntime_and_auto_with_its_reason(tiny):
    assert create_backend(_cfg(tiny, backend="onnxruntime")).name.startswith("onnxruntime:")
    choice = choose_backend(_cfg(tiny, backend="auto", allow_cpu_fallback=True))
    assert choice.backend.class_names == ("red", "green's")
    assert choice.why.startswith("auto: ") and "allow_cpu_fallback" in choice.why
    assert choose_backend(_cfg(tiny, backend="onnxruntime")).why == "configured"


@pytest.mark.skipif("CUDAExecutionProvider" in ort.get_available_providers(), reason="a GPU backend is here")
def test_auto_never_settles_for_the_cpu_unless_allowed(tiny):
    with pytest.raises(ModelError, match=r"backend auto found no GPU backend .*allow_cpu_fallback: true"):
        choose_backend(_cfg(tiny, backend="auto"))


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="TensorRT is installed here")
def test_a_backend_whose_runtime_is_missing_is_a_model_error():
    with pytest.raises(ModelError, match="'tensorrt' is not available on this machine"):
        backend_class("tensorrt")


@pytest.mark.slow
@pytest.mark.skipif(not SHARED_YOLOV8N.is_file(), reason=f"{SHARED_YOLOV8N} not present")
def test_shared_yolov8n_runs_a_batch_of_two_at_640():
    backend = OnnxRuntimeBackend.from_config(
        OnnxRuntimeCpuConfig(path=SHARED_YOLOV8N, input_size=(640, 640), max_batch=2, threads=0)
    )
    assert len(backend.class_names) == 80
    batch = np.random.default_rng(0).random((2, 3, 640, 640), dtype=np.float32)
    output = backend.infer(batch)
    # The candidate head (default K 3000 of 8400 anchors) answers (N, K, 6), not (N, 84, 8400).
    assert output.shape == (2, 3000, 6) and np.isfinite(output).all()
    assert len(decode_candidates(output, 0.25, 0.45, 100)) == 2
