"""`pipeline convert`: FP16 / Q/DQ INT8 models and the accuracy gate, on ONNX Runtime CPU."""

from __future__ import annotations

import cv2
import numpy as np
import onnx
import pytest

from pipeline.core.messages import Detections
from pipeline.parts.preprocessing.letterbox import Letterboxer
from pipeline.parts.sources.synthetic import SyntheticSource
from pipeline.service.cli import main
from pipeline.service.convert.accuracy_gate import ValidationSet, average_precision, run_gate
from pipeline.service.convert.calibration import ImageFolderReader
from tests.pipeline_helpers import DEMO_MODEL

_DIMS = onnx.load(str(DEMO_MODEL), load_external_data=False).graph.input[0].type.tensor_type.shape.dim
SIDE = _DIMS[3].dim_value or 320  # the model's own input size when it has a fixed one


def dets(boxes, scores, classes) -> Detections:
    return Detections(np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(scores, np.float32),
                      np.asarray(classes, np.int64))


def test_average_precision_of_perfect_half_and_misranked_predictions():
    truth = [dets([[0, 0, 10, 10], [20, 20, 30, 30]], [1, 1], [0, 0])]
    assert average_precision([dets([[0, 0, 10, 10], [20, 20, 30, 30]], [0.9, 0.8], [0, 0])], truth, 1) == 1.0
    assert average_precision([dets([[0, 0, 10, 10]], [0.9], [0])], truth, 1) == pytest.approx(0.5)
    # A false positive ranked first: precision 1/2 then 2/3; the envelope makes both steps 2/3.
    misranked = dets([[50, 50, 60, 60], [0, 0, 10, 10], [20, 20, 30, 30]], [0.95, 0.9, 0.8], [0, 0, 0])
    assert average_precision([misranked], truth, 1) == pytest.approx(2 / 3)
    assert average_precision([dets([[0, 0, 10, 10]], [0.9], [1])], truth, 2) == 0.0  # wrong class


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("calib")
    source = SyntheticSource(640, 480, seed=11, defect_probability=0.5, realtime=False)
    for k in range(6):
        cv2.imwrite(str(folder / f"{k:03d}.png"), source.render(k).image)
    return folder


def test_calibration_reader_letterboxes_like_the_pipeline(image_folder):
    reader = ImageFolderReader(image_folder, "images", (320, 320))
    first = reader.get_next()["images"]
    expected = np.empty((3, 320, 320), np.float32)
    Letterboxer((320, 320))(cv2.imread(str(reader.files[0])), expected)
    np.testing.assert_array_equal(first[0], expected)
    assert sum(1 for _ in iter(reader.get_next, None)) == 5
    reader.rewind()
    assert reader.get_next() is not None


def test_calibration_reader_names_an_empty_folder(tmp_path):
    with pytest.raises(ValueError, match=f"{tmp_path}: no images"):
        ImageFolderReader(tmp_path, "images", (320, 320))


@pytest.mark.timeout(120)
def test_fp16_keeps_fp32_io_and_class_names_and_passes_the_gate(tmp_path, capsys):
    out = tmp_path / "model-fp16.onnx"
    code = main(["convert", str(DEMO_MODEL), "--fp16", "-o", str(out), "--input-size", str(SIDE), "--val-frames", "12"])
    assert code == 0, capsys.readouterr().err
    model = onnx.load(str(out))
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert model.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert any(i.data_type == onnx.TensorProto.FLOAT16 for i in model.graph.initializer)
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["pipeline.precision"] == "fp16"
    assert meta.get("names") == {p.key: p.value for p in onnx.load(str(DEMO_MODEL)).metadata_props}.get("names")
    assert "mAP@0.5" in capsys.readouterr().out


def yolo_like_graph(path) -> None:
    """What broke FP16 conversion on YOLOv8: a Resize, and the model's own Cast to float
    (its anchor grid: Shape -> Gather -> Cast) added to FP16 activations."""
    from onnx import TensorProto, helper, numpy_helper

    weight = np.linspace(0.5, 2.0, 3, dtype=np.float32).reshape(1, 3, 1, 1)
    nodes = [
        helper.make_node("Resize", ["images", "", "scales"], ["small"], mode="nearest"),
        helper.make_node("Shape", ["small"], ["shape"]),
        helper.make_node("Gather", ["shape", "axis3"], ["side"]),
        helper.make_node("Cast", ["side"], ["side_f"], to=TensorProto.FLOAT, name="grid_cast"),
        helper.make_node("Add", ["small", "side_f"], ["shifted"]),
        helper.make_node("Mul", ["shifted", "weight"], ["output0"]),
    ]
    inits = [numpy_helper.from_array(np.array([1, 1, 0.5, 0.5], np.float32), "scales"),
             numpy_helper.from_array(np.array(3, np.int64), "axis3"), numpy_helper.from_array(weight, "weight")]
    graph = helper.make_graph(nodes, "yolo-like", [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 32, 32])],
                              [helper.make_tensor_value_info("output0", TensorProto.FLOAT, [1, 3, 16, 16])], initializer=inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))


def test_fp16_conversion_needs_no_onnxruntime_transformers(tmp_path, monkeypatch):
    """The lab's onnxruntime-gpu has no onnxruntime.transformers: FP16 must not need it."""
    import sys

    import onnxruntime as ort

    from pipeline.service.convert.precision import to_fp16

    monkeypatch.setitem(sys.modules, "onnxruntime.transformers", None)  # any import of it now fails
    monkeypatch.setitem(sys.modules, "onnxruntime.transformers.float16", None)
    source, target = tmp_path / "model.onnx", tmp_path / "model-fp16.onnx"
    yolo_like_graph(source)
    to_fp16(source, target)
    model = onnx.load(str(target))
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert model.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert any(i.data_type == onnx.TensorProto.FLOAT16 for i in model.graph.initializer)
    images = {"images": np.random.default_rng(0).random((1, 3, 32, 32), dtype=np.float32)}
    want = ort.InferenceSession(str(source), providers=["CPUExecutionProvider"]).run(None, images)[0]
    got = ort.InferenceSession(str(target), providers=["CPUExecutionProvider"]).run(None, images)[0]
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=2e-3, atol=2e-2)  # FP16's 11-bit mantissa around values up to ~35


@pytest.mark.timeout(180)
def test_int8_is_a_qdq_model_calibrated_on_the_folder(tmp_path, image_folder, capsys):
    out = tmp_path / "model-int8.onnx"
    code = main(["convert", str(DEMO_MODEL), "--int8", "--calib", str(image_folder), "-o", str(out),
                 "--input-size", str(SIDE), "--val-frames", "8", "--max-map-drop", "1", "--min-verdict-agreement", "0"])
    assert code == 0, capsys.readouterr().err
    ops = {n.op_type for n in onnx.load(str(out)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert "calibration images 6/6" in capsys.readouterr().err


@pytest.mark.timeout(120)
def test_a_refused_model_is_not_written(tmp_path, capsys):
    out = tmp_path / "model-fp16.onnx"
    # No model can gain a whole unit of mAP: the gate must refuse and leave nothing behind.
    code = main(["convert", str(DEMO_MODEL), "--fp16", "-o", str(out), "--input-size", str(SIDE), "--val-frames", "4",
                 "--max-map-drop", "-1"])
    assert code == 1
    assert "refused" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_int8_without_calibration_images_is_a_clear_error(tmp_path, capsys):
    assert main(["convert", str(DEMO_MODEL), "--int8"]) == 2
    assert "--int8 needs --calib DIR" in capsys.readouterr().err


@pytest.mark.timeout(300)
@pytest.mark.skipif(DEMO_MODEL.name != "demo.onnx", reason="needs the trained demo model (mAP means nothing otherwise)")
def test_gate_measures_a_real_loss_against_ground_truth(tmp_path):
    """A model whose weights were damaged loses mAP and verdicts, and the gate sees it."""
    model = onnx.load(str(DEMO_MODEL))
    rng = np.random.default_rng(0)
    for init in model.graph.initializer:
        if init.data_type == onnx.TensorProto.FLOAT and len(init.dims) == 4:
            w = onnx.numpy_helper.to_array(init)
            init.CopyFrom(onnx.numpy_helper.from_array(w + rng.normal(0, w.std() * 0.8, w.shape).astype(w.dtype),
                                                        init.name))
    damaged = tmp_path / "damaged.onnx"
    onnx.save(model, str(damaged))
    data = ValidationSet.synthetic(40)
    same = run_gate(DEMO_MODEL, DEMO_MODEL, data, (SIDE, SIDE), 0.02, 0.98)
    assert same.passed and same.map50_fp32 > 0.3 and same.verdict_agreement == 1.0
    worse = run_gate(DEMO_MODEL, damaged, data, (SIDE, SIDE), 0.02, 0.98)
    assert not worse.passed and worse.map_drop > 0.02
