"""YOLO output decoding and NMS against hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.core.messages import Geometry
from pipeline.parts.decoding.nms import nms
from pipeline.parts.decoding.yolo_decode import BadModelOutput, decode, to_detections


def _output(anchors: list[tuple[float, float, float, float, list[float]]], num_classes: int) -> np.ndarray:
    """(1, 4+C, A) from (cx, cy, w, h, class scores) per anchor."""
    rows = [[cx, cy, w, h, *scores] for cx, cy, w, h, scores in anchors]
    out = np.array(rows, np.float32).T[None]
    assert out.shape == (1, 4 + num_classes, len(anchors))
    return out


def _decode(out: np.ndarray, num_classes: int = 2, conf: float = 0.25, iou: float = 0.5, max_det: int = 100):
    return decode(out, num_classes, conf, iou, max_det)


def test_box_is_converted_from_centre_size_to_corners():
    (boxes, scores, ids), = _decode(_output([(50, 40, 20, 10, [0.9, 0.1])], 2))
    np.testing.assert_array_equal(boxes, [[40, 35, 60, 45]])
    np.testing.assert_allclose(scores, [0.9])
    assert ids.tolist() == [0] and ids.dtype == np.int64 and boxes.dtype == np.float32


def test_overlapping_boxes_of_one_class_keep_only_the_best():
    out = _output([(50, 50, 20, 20, [0.8, 0]), (52, 50, 20, 20, [0.9, 0])], 2)  # IoU 18/22
    (boxes, scores, ids), = _decode(out)
    np.testing.assert_allclose(scores, [0.9])
    np.testing.assert_array_equal(boxes, [[42, 40, 62, 60]])


def test_same_boxes_of_different_classes_are_both_kept():
    out = _output([(50, 50, 20, 20, [0.8, 0]), (52, 50, 20, 20, [0, 0.9])], 2)
    (_, scores, ids), = _decode(out)
    assert ids.tolist() == [1, 0]
    np.testing.assert_allclose(scores, [0.9, 0.8])


def test_iou_at_or_below_threshold_is_not_suppressed():
    # Two 10x10 boxes sharing half their area: IoU = 50 / 150 = 1/3.
    out = _output([(10, 10, 10, 10, [0.9, 0]), (15, 10, 10, 10, [0.8, 0])], 2)
    assert len(_decode(out, iou=0.34)[0][1]) == 2
    assert len(_decode(out, iou=0.33)[0][1]) == 1


def test_scores_at_or_below_the_confidence_threshold_are_dropped():
    out = _output([(10, 10, 5, 5, [0.25, 0]), (50, 50, 5, 5, [0, 0.26]), (90, 90, 5, 5, [0.1, 0.2])], 2)
    (_, scores, ids), = _decode(out, conf=0.25)
    assert ids.tolist() == [1]
    np.testing.assert_allclose(scores, [0.26])


def test_class_is_the_argmax_of_the_scores():
    (_, scores, ids), = _decode(_output([(10, 10, 5, 5, [0.3, 0.7, 0.5])], 3), num_classes=3)
    assert ids.tolist() == [1]
    np.testing.assert_allclose(scores, [0.7])


def test_transposed_layout_gives_identical_results():
    rng = np.random.default_rng(1)
    out = rng.random((2, 4 + 3, 50), dtype=np.float32) * np.array([100, 100, 30, 30, 1, 1, 1], np.float32)[:, None]
    first = decode(out, 3, 0.5, 0.45, 100)
    second = decode(np.ascontiguousarray(out.transpose(0, 2, 1)), 3, 0.5, 0.45, 100)
    assert len(first) == len(second) == 2
    for a, b in zip(first, second):
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x, y)
    assert len(first[0][1]) > 0


def test_ambiguous_square_layout_is_read_as_channels_first():
    out = _output([(10, 10, 4, 4, [0.9]), (30, 30, 4, 4, [0.8]), (50, 50, 4, 4, [0.7]),
                   (70, 70, 4, 4, [0.6]), (90, 90, 4, 4, [0.5])], 1)  # (1, 5, 5)
    (_, scores, _), = decode(out, 1, 0.25, 0.5, 100)
    np.testing.assert_allclose(scores, [0.9, 0.8, 0.7, 0.6, 0.5])


def test_max_detections_keeps_the_best():
    anchors = [(10 + 20 * i, 10, 5, 5, [0.3 + 0.05 * i, 0]) for i in range(8)]
    (_, scores, _), = _decode(_output(anchors, 2), max_det=3)
    np.testing.assert_allclose(scores, [0.65, 0.6, 0.55])


def test_each_image_of_a_batch_is_decoded_separately():
    one = _output([(10, 10, 5, 5, [0.9, 0])], 2)
    empty = _output([(10, 10, 5, 5, [0.1, 0])], 2)
    results = _decode(np.concatenate([one, empty]))
    assert [len(r[1]) for r in results] == [1, 0]
    assert results[1][0].shape == (0, 4) and results[1][2].dtype == np.int64


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_output_raises_bad_model_output(bad):
    out = _output([(10, 10, 5, 5, [0.1, 0.2])], 2)
    out[0, 5, 0] = bad  # in a score that would otherwise be silently below threshold
    with pytest.raises(BadModelOutput, match="NaN|inf"):
        _decode(out)


@pytest.mark.parametrize("shape", [(84, 8400), (1, 2, 84, 8400), (1, 10, 20)])
def test_wrong_shape_raises_bad_model_output(shape):
    with pytest.raises(BadModelOutput, match="shape"):
        decode(np.zeros(shape, np.float32), 80, 0.25, 0.45, 100)


def test_nms_returns_indices_best_first():
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [20, 20, 30, 30]], np.float32)
    scores = np.array([0.5, 0.9, 0.7], np.float32)
    assert nms(boxes, scores, 0.5).tolist() == [1, 2]
    assert nms(boxes[:0], scores[:0], 0.5).tolist() == []


def test_to_detections_maps_boxes_to_source_pixels_and_clips():
    geometry = Geometry(scale=0.5, pad_x=0.0, pad_y=40.0, src_width=640, src_height=480)
    decoded = (np.array([[10, 50, 110, 150], [-5, 0, 330, 320]], np.float32),
               np.array([0.9, 0.8], np.float32), np.array([2, 0], np.int64))
    detections = to_detections(decoded, geometry)
    np.testing.assert_array_equal(detections.boxes, [[20, 20, 220, 220], [0, 0, 640, 480]])
    assert detections.class_ids.tolist() == [2, 0] and len(detections) == 2


def test_to_detections_of_nothing_is_empty():
    empty = (np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64))
    assert len(to_detections(empty, Geometry(1.0, 0.0, 0.0, 64, 64))) == 0


def test_flooding_output_is_capped_before_nms_and_keeps_the_best():
    rng = np.random.default_rng(2)
    out = rng.random((1, 4 + 2, 5000), dtype=np.float32)
    out[0, :4] = [[100], [100], [1], [1]]  # identical boxes: NMS keeps one per class
    out[0, 4, 1234] = 1.0
    (_, scores, _), = decode(out, 2, 0.1, 0.5, 100, max_candidates=50)
    assert scores[0] == 1.0 and len(scores) == 2  # one box per class survives
