"""Hypothesis against the output decoder, NMS and the rules: any tensor of the right rank.

Promises: decoding never raises anything but `BadModelOutput` (an ERROR verdict in the
infer stage, see tests/test_faults.py for the end-to-end proof); a tensor with NaN or inf
is always refused; a finite tensor with a candidate the rules would count never turns
into a PASS; results are well-formed (parallel arrays, valid class ids, best first,
boxes inside the source image).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from pipeline.config.models import RulesConfig
from pipeline.core.messages import Geometry, Outcome
from pipeline.parts.decoding.nms import nms
from pipeline.parts.decoding.yolo_decode import BadModelOutput, decode, to_detections
from pipeline.parts.rules import RuleBook

CLASSES = ("scratch", "spot", "crack")
GEOMETRY = Geometry(scale=0.5, pad_x=0.0, pad_y=40.0, src_width=640, src_height=480)
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

any_float32 = st.floats(width=32, allow_nan=True, allow_infinity=True)
finite_float32 = st.floats(width=32, allow_nan=False, allow_infinity=False)


@st.composite
def yolo_outputs(draw, elements=finite_float32):
    """(N, 4+C, A) or the transposed (N, A, 4+C), with any float32 values."""
    n, anchors = draw(st.integers(1, 2)), draw(st.integers(0, 40))
    shape = (n, 4 + len(CLASSES), anchors)
    out = draw(arrays(np.float32, shape, elements=elements))
    return out.transpose(0, 2, 1).copy() if draw(st.booleans()) else out


def decoded_or_refused(output: np.ndarray):
    try:
        return decode(output, len(CLASSES), conf_threshold=0.25, iou_threshold=0.45, max_detections=20)
    except BadModelOutput:
        return None


@FUZZ
@given(arrays(np.float32, st.tuples(st.integers(0, 3), st.integers(0, 9), st.integers(0, 9)), elements=any_float32))
def test_any_rank_3_tensor_decodes_or_is_refused_never_crashes(output):
    result = decoded_or_refused(output)  # any other exception fails the test
    if result is not None:
        assert len(result) == output.shape[0]
        for boxes, scores, class_ids in result:
            assert boxes.shape == (len(scores), 4) and len(class_ids) == len(scores)


@FUZZ
@given(yolo_outputs(any_float32))
def test_nan_or_inf_anywhere_is_refused_and_only_then(output):
    if np.isfinite(output).all():
        try:
            decode(output, len(CLASSES), 0.25, 0.45, 20)
        except BadModelOutput as exc:  # finite values can still overflow a box corner
            assert "beyond float32 range" in str(exc)
    else:
        with pytest.raises(BadModelOutput, match="NaN|inf"):
            decode(output, len(CLASSES), 0.25, 0.45, 20)


@FUZZ
@given(st.data())
def test_a_single_poisoned_value_is_refused(data):
    output = data.draw(yolo_outputs().filter(lambda o: o.size > 0))
    flat = output.reshape(-1)
    flat[data.draw(st.integers(0, flat.size - 1))] = data.draw(st.sampled_from([np.nan, np.inf, -np.inf]))
    with pytest.raises(BadModelOutput):
        decode(output, len(CLASSES), 0.25, 0.45, 20)


@FUZZ
@given(yolo_outputs())
def test_finite_output_gives_well_formed_detections_in_the_image(output):
    decoded = decoded_or_refused(output)  # refused only for corners beyond float32 range
    for boxes, scores, class_ids in decoded or []:
        assert len(boxes) == len(scores) == len(class_ids) <= 20
        assert np.all(scores > 0.25) and np.all(np.diff(scores) <= 0), "best first"
        assert np.all((class_ids >= 0) & (class_ids < len(CLASSES)))
        dets = to_detections((boxes, scores, class_ids), GEOMETRY)
        assert np.isfinite(dets.boxes).all()
        assert np.all(dets.boxes[:, 0::2] <= 640) and np.all(dets.boxes[:, 1::2] <= 480)
        assert np.all(dets.boxes >= 0)


@FUZZ
@given(yolo_outputs())
def test_a_countable_candidate_never_becomes_a_pass(output):
    """The chain from tensor to verdict: NMS always keeps the strongest candidate, and any
    kept detection the rules count (score >= 0.5, a box of positive size in the image)
    makes the part FAIL. A box of no size, or wholly in the letterbox padding, is not on
    the part and does not count."""
    channels_first = output if output.shape[1] == 4 + len(CLASSES) else output.transpose(0, 2, 1)
    rules = RuleBook(RulesConfig(), CLASSES)
    decoded = decoded_or_refused(output)
    if decoded is None:
        return  # refused: the infer stage turns that into an ERROR verdict, not a PASS
    for image, (boxes, scores, ids) in zip(channels_first, decoded):
        strongest = image[4:].max() if image.shape[1] else 0.0
        if strongest > 0.25:
            assert len(scores) and scores[0] == strongest, "NMS dropped the strongest candidate"
        dets = to_detections((boxes, scores, ids), GEOMETRY)
        sized = (dets.boxes[:, 2] > dets.boxes[:, 0]) & (dets.boxes[:, 3] > dets.boxes[:, 1])
        if np.any(sized & (dets.scores >= 0.5)):
            assert rules.judge(dets, None).outcome is Outcome.FAIL


def iou(a: np.ndarray, b: np.ndarray) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = max(0.0, a[2] - a[0]) * max(0.0, a[3] - a[1]) + max(0.0, b[2] - b[0]) * max(0.0, b[3] - b[1]) - w * h
    return w * h / union if union > 0 else 0.0


@FUZZ
@given(st.integers(0, 30).flatmap(lambda k: st.tuples(
    arrays(np.float64, (k, 4), elements=st.floats(-1e4, 1e4)),
    arrays(np.float32, (k,), elements=st.floats(0, 1, width=32)))),
    st.floats(0, 1))
def test_nms_keeps_a_subset_best_first_and_never_two_overlapping(boxes_scores, threshold):
    boxes, scores = boxes_scores
    kept = nms(boxes, scores, threshold)
    assert len(set(kept.tolist())) == len(kept) and all(0 <= k < len(boxes) for k in kept)
    if len(boxes):
        assert scores[kept[0]] == scores.max()
    assert np.all(np.diff(scores[kept]) <= 0)
    for i, a in enumerate(kept):
        for b in kept[i + 1:]:
            assert iou(boxes[a], boxes[b]) <= threshold + 1e-9
