"""The candidate head (pipeline.parts.modelfile.candidate_head) run by ONNX Runtime on the CPU.

Promises: whenever at most K anchors pass the confidence threshold, decoding the head's
(N, K, 6) gives exactly the detections of decoding the full raw tensor; when more pass,
the K best by score are kept, as Ultralytics' `max_nms` keeps them; a NaN or inf
anywhere in the raw tensor still reaches the decoder; the user's file is never changed;
the demo model gives the same verdicts with and without the head.

The raw tensors here come out of real ONNX graphs (a constant the model adds to its
input's zeroed mean), so the real head runs in ONNX Runtime on exactly those values.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper, save

from pipeline.config.model import OnnxRuntimeCpuConfig
from pipeline.config.models import RulesConfig
from pipeline.parts.backends.onnxruntime_backend import OnnxRuntimeBackend, output_tail
from pipeline.parts.decoding.yolo_decode import BadModelOutput, decode, decode_candidates, to_detections
from pipeline.parts.modelfile.model_info import ModelError
from pipeline.parts.preprocessing import Letterboxer
from pipeline.parts.rules import RuleBook
from pipeline.parts.sources.synthetic import SyntheticSource
from tests.pipeline_helpers import DEMO_MODEL

SIDE = 32  # input side of the constant models; their output does not depend on the image


def constant_model(path: Path, raw: np.ndarray, anchors_dim: int | str | None = None, opset: int = 17) -> Path:
    """An ONNX model with one image input whose first output is `raw` (1, D1, D2)."""
    dtype = TensorProto.FLOAT16 if raw.dtype == np.float16 else TensorProto.FLOAT
    zero = numpy_helper.from_array(np.zeros((), raw.dtype), "zero")
    nodes = [
        helper.make_node("ReduceMean", ["images"], ["mean"], keepdims=0),  # a scalar tied to the input
        helper.make_node("Mul", ["mean", "zero"], ["nothing"]),
        helper.make_node("Add", ["raw", "nothing"], ["output0"]),
    ]
    d1, d2 = raw.shape[1:]
    out_shape = ["batch", d1, d2 if anchors_dim is None else anchors_dim]
    graph = helper.make_graph(
        nodes, "constant",
        [helper.make_tensor_value_info("images", dtype, ["batch", 3, SIDE, SIDE])],
        [helper.make_tensor_value_info("output0", dtype, out_shape)],
        initializer=[numpy_helper.from_array(raw, "raw"), zero])
    save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)]), str(path))
    return path


def run_head(path: Path, max_candidates: int | None, class_names: tuple[str, ...]) -> np.ndarray:
    cfg = OnnxRuntimeCpuConfig(path=path, input_size=SIDE, class_names=class_names, max_candidates=max_candidates, threads=1)
    backend = OnnxRuntimeBackend.from_config(cfg)
    try:
        dtype = backend.input_dtype
        return backend.infer(np.zeros((1, 3, SIDE, SIDE), dtype)).copy()
    finally:
        backend.close()


def names(count: int) -> tuple[str, ...]:
    return tuple(f"c{i}" for i in range(count))


def assert_same(got, want) -> None:
    assert len(got) == len(want)
    for (gb, gs, gc), (wb, ws, wc) in zip(got, want):
        np.testing.assert_array_equal(gb, wb)
        np.testing.assert_array_equal(gs, ws)
        np.testing.assert_array_equal(gc, wc)


@st.composite
def raw_tensors(draw):
    """(1, 4+C, A) with coarse values, so scores tie and boxes overlap often."""
    classes, anchors = draw(st.integers(1, 4)), draw(st.integers(1, 48))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    centres = rng.integers(0, 8, (2, anchors)) * 4.0
    sizes = rng.integers(1, 6, (2, anchors)) * 4.0
    scores = rng.integers(0, 10, (classes, anchors)) / 10.0  # many ties, some at the threshold
    return np.concatenate([centres, sizes, scores]).astype(np.float32)[None], classes


HEAD_FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                            HealthCheck.function_scoped_fixture])


@HEAD_FUZZ
@given(raw_tensors(), st.integers(1, 60), st.booleans())
def test_head_decodes_like_the_full_tensor(tmp_path, case, k, channels_last):
    raw, classes = case
    assume(not channels_last or raw.shape[2] != raw.shape[1])  # a square tensor reads as channels-first
    model_raw = raw.transpose(0, 2, 1).copy() if channels_last else raw
    head = run_head(constant_model(tmp_path / "m.onnx", model_raw), k, names(classes))
    anchors = raw.shape[2]
    assert head.shape == (1, min(k, anchors), 6) and head.dtype == np.float32
    got = decode_candidates(head, 0.3, 0.45, 20)
    passing = int((raw[0, 4:].max(axis=0) > 0.3).sum())
    if passing <= k:  # the promise: identical detections
        assert_same(got, decode(raw, classes, 0.3, 0.45, 20))
    # More than K: the K best by score, as decode's host-side cap (and max_nms) picks them.
    assert_same(got, decode(raw, classes, 0.3, 0.45, 20, max_candidates=k))


def flooding_tensor() -> np.ndarray:
    """One object covered by 1,500 anchors plus 300 weaker separate objects, 2 classes,
    and 200 anchors below the threshold: (1, 6, 2000)."""
    rng = np.random.default_rng(7)
    big = np.empty((6, 1500), np.float32)
    big[0:2] = 320 + rng.uniform(-2, 2, (2, 1500))  # a 200 x 200 box jittered by <= 2 px: IoU > 0.9
    big[2:4] = 200
    big[4] = np.linspace(0.95, 0.90, 1500)  # distinct, all above every weaker object
    big[5] = 0.0
    weak = np.empty((6, 300), np.float32)
    grid = np.arange(300)
    weak[0], weak[1] = 1000 + (grid % 20) * 20.0, 1000 + (grid // 20) * 20.0  # 10 x 10 boxes 20 px apart
    weak[2:4] = 10
    weak[4] = 0.0
    weak[5] = 0.30 + 0.5 * rng.permutation(300) / 300  # distinct, 0.30..0.80, class 1
    low = np.zeros((6, 200), np.float32)
    low[:4] = 50
    low[4] = 0.2
    return np.concatenate([big, weak, low], axis=1)[None]


def expected_by_hand(raw: np.ndarray, max_nms: int, max_det: int) -> tuple[np.ndarray, np.ndarray]:
    """Ultralytics' documented algorithm, done by hand for this tensor: candidates are the
    1800 anchors above conf 0.25; if more than max_nms, the max_nms best by score; NMS per
    class keeps the big object's best anchor (its others overlap it at IoU > 0.9) and every
    weak object (they touch nothing); kept boxes are best first; the first max_det stay."""
    scores = raw[0, 4:].max(axis=0)
    passing = np.flatnonzero(scores > 0.25)
    entering = passing[np.argsort(-scores[passing], kind="stable")][:max_nms]
    weak_ids = [i for i in entering if i >= 1500]
    kept = [0] + sorted(weak_ids, key=lambda i: -scores[i])  # anchor 0 is the big object's best
    kept = kept[:max_det]
    return np.array(kept), scores[kept]


@pytest.mark.parametrize("max_nms, max_det, count", [(3000, 300, 300), (1000, 300, 1), (1600, 300, 101)])
def test_flooding_tensor_matches_ultralytics_semantics(tmp_path, max_nms, max_det, count):
    raw = flooding_tensor()
    head = run_head(constant_model(tmp_path / "flood.onnx", raw), max_nms, names(2))
    (boxes, scores, classes), = decode_candidates(head, 0.25, 0.45, max_det)
    anchors, want_scores = expected_by_hand(raw, max_nms, max_det)
    assert len(scores) == len(anchors) == count  # the old fixed 1024 cap kept 1 box in the first case
    np.testing.assert_array_equal(scores, want_scores)
    cx, cy, w, h = raw[0, :4, anchors].T
    np.testing.assert_array_equal(boxes, np.stack([cx - w * 0.5, cy - h * 0.5, cx + w * 0.5, cy + h * 0.5], 1))
    assert classes.tolist() == [0] + [1] * (count - 1)


@pytest.mark.parametrize("max_nms", [3000, 1000])
def test_flooding_tensor_matches_ultralytics_itself(tmp_path, max_nms):
    torch = pytest.importorskip("torch", reason="Ultralytics needs torch, which is not installed here")
    pytest.importorskip("ultralytics", reason="ultralytics is not installed (not a dependency)")
    try:  # 8.4 moved it from ops to nms
        from ultralytics.utils import nms as ops
    except ImportError:
        from ultralytics.utils import ops
    raw = flooding_tensor()
    head = run_head(constant_model(tmp_path / "flood.onnx", raw), max_nms, names(2))
    (boxes, scores, classes), = decode_candidates(head, 0.25, 0.45, 300)
    theirs = ops.non_max_suppression(torch.from_numpy(raw), conf_thres=0.25, iou_thres=0.45,
                                     max_nms=max_nms, max_det=300)[0].numpy()
    np.testing.assert_allclose(boxes, theirs[:, :4], atol=1e-3)
    np.testing.assert_array_equal(scores, theirs[:, 4])
    np.testing.assert_array_equal(classes, theirs[:, 5].astype(np.int64))


def test_nan_or_inf_outside_the_best_k_still_makes_the_image_an_error(tmp_path):
    for bad in (np.nan, np.inf):
        raw = flooding_tensor()
        raw[0, 0, 1999] = bad  # a box coordinate of an anchor far below the threshold
        head = run_head(constant_model(tmp_path / "bad.onnx", raw), 100, names(2))
        assert head.shape == (1, 100, 6) and not np.isfinite(head).any()
        with pytest.raises(BadModelOutput, match="NaN or inf"):
            decode_candidates(head, 0.25, 0.45, 100)


def test_symbolic_anchor_axis_is_counted_by_a_probe_run(tmp_path):
    raw = flooding_tensor()[:, :, :40]
    path = constant_model(tmp_path / "dyn.onnx", raw, anchors_dim="anchors")
    cfg = OnnxRuntimeCpuConfig(path=path, input_size=SIDE, class_names=names(2), max_candidates=3000)
    backend = OnnxRuntimeBackend.from_config(cfg)
    try:
        assert output_tail(backend._session) == (40, 6)  # K clamped to the 40 anchors the model has
    finally:
        backend.close()


def test_fp16_model_gets_a_float32_head_with_the_same_detections(tmp_path):
    raw = flooding_tensor()[:, :, 1490:1700].astype(np.float16)
    head = run_head(constant_model(tmp_path / "fp16.onnx", raw), 3000, names(2))
    assert head.dtype == np.float32 and head.shape == (1, 210, 6)
    assert_same(decode_candidates(head, 0.25, 0.45, 100), decode(raw.astype(np.float32), 2, 0.25, 0.45, 100))


def test_too_old_opset_is_a_model_error_naming_the_way_out(tmp_path):
    path = constant_model(tmp_path / "old.onnx", flooding_tensor()[:, :, :10], opset=10)
    with pytest.raises(ModelError, match="opset 10.*max_candidates: null"):
        run_head(path, 100, names(2))
    assert run_head(path, None, names(2)).shape == (1, 6, 10)  # without the head it still runs


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def demo_frames():
    source = SyntheticSource(width=640, height=480, seed=9, defect_probability=0.7, realtime=False)
    return [source.render(k).image for k in range(12)]


@pytest.mark.timeout(120)
def test_demo_model_gives_the_same_detections_and_verdicts_with_and_without_the_head(demo_frames):
    before = _sha(DEMO_MODEL)
    backends = [OnnxRuntimeBackend.from_config(OnnxRuntimeCpuConfig(path=DEMO_MODEL, input_size=416, max_batch=4,
                                                           max_candidates=k, threads=1)) for k in (3000, None)]
    try:
        headed, plain = backends
        assert output_tail(headed._session) == (3000, 6) and plain.class_names == headed.class_names
        rules = RuleBook(RulesConfig(), headed.class_names)
        letterbox = Letterboxer((416, 416))
        seen = 0
        for start in range(0, len(demo_frames), 4):
            tensors = [np.empty((3, 416, 416), np.float32) for _ in range(4)]
            geometries = [letterbox(image, t) for image, t in zip(demo_frames[start:start + 4], tensors)]
            with_head = decode_candidates(headed.infer_tensors(tensors), 0.25, 0.45, 100)
            without = decode(plain.infer_tensors(tensors), 3, 0.25, 0.45, 100)
            assert_same(with_head, without)
            for a, b, g in zip(with_head, without, geometries):
                assert rules.judge(to_detections(a, g), None).outcome == rules.judge(to_detections(b, g), None).outcome
                seen += len(a[1])
        assert seen > 0  # the frames carry defects the model finds, so the comparison has content
    finally:
        for backend in backends:
            backend.close()
    assert _sha(DEMO_MODEL) == before  # the head is built in memory; the user's file is untouched
