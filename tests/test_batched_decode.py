"""Decoding a whole batch in one pass (pipeline.parts.decoding.nms.nms_batched, YoloDecoder's
decode_batch) against the one-image greedy loop it replaces on the hot path.

Promises: for every image of a batch, the batched NMS keeps exactly the boxes, in exactly
the order, that `nms_by_class` (the greedy loop, unchanged) keeps for that image alone,
bit for bit, on coarse tensors full of ties and overlaps; the batch decoder's detections
equal decoding each image by itself (threshold, best class, corners, greedy NMS, the
letterbox geometry) with the documented semantics; an unusable image in a batch fails
alone; and the infer stage hands on, per image, the detections the decoder gives.
"""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.core.messages import Geometry
from pipeline.parts.decoding.nms import nms_batched, nms_by_class
from pipeline.parts.decoding.yolo_decode import BadModelOutput, YoloDecoder, decode, to_detections

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def candidate_batches(draw):
    """Candidates of several images: coarse boxes and scores, so ties and overlaps abound."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    counts = rng.integers(0, 30, draw(st.integers(1, 6)))
    n = int(counts.sum())
    x1, y1 = rng.integers(0, 10, (2, n)) * 4.0
    w, h = rng.integers(0, 6, (2, n)) * 4.0  # some empty boxes too
    boxes = np.stack([x1, y1, x1 + w, y1 + h], axis=1).astype(np.float32)
    scores = (rng.integers(1, 8, n) / 8.0).astype(np.float32)
    classes = rng.integers(0, draw(st.integers(1, 3)), n).astype(np.int64)
    images = np.repeat(np.arange(len(counts)), counts)
    return boxes, scores, classes, images, draw(st.sampled_from([0.0, 0.3, 0.45, 0.5, 0.7])), draw(st.integers(1, 12))


@FUZZ
@given(candidate_batches())
def test_batched_nms_keeps_what_the_greedy_loop_keeps_image_by_image(batch):
    boxes, scores, classes, images, iou, max_keep = batch
    got = nms_batched(boxes, scores, classes, images, iou, max_keep)
    want = []
    for i in np.unique(images):
        rows = np.flatnonzero(images == i)
        want += rows[nms_by_class(boxes[rows], scores[rows], classes[rows], iou, max_keep)].tolist()
    assert got.tolist() == want


def test_batched_nms_of_no_candidates_is_empty():
    none = np.zeros((0, 4), np.float32)
    assert nms_batched(none, np.zeros(0, np.float32), np.zeros(0, np.int64), np.zeros(0, np.int64), 0.5, 10).size == 0


def raw_batch(rng: np.random.Generator, n: int, classes: int, anchors: int) -> np.ndarray:
    """(n, 4+C, A) with coarse centres, sizes and scores (many ties, some at the threshold)."""
    centres = rng.integers(0, 16, (n, 2, anchors)) * 4.0
    sizes = rng.integers(1, 8, (n, 2, anchors)) * 4.0
    scores = rng.integers(0, 10, (n, classes, anchors)) / 10.0
    return np.concatenate([centres, sizes, scores], axis=1).astype(np.float32)


def one_image_by_itself(raw: np.ndarray, conf: float, iou: float, max_det: int, geometry: Geometry):
    """The documented semantics for one (4+C, A) image, from the unchanged greedy loop."""
    best = raw[4:].max(axis=0)
    keep = np.flatnonzero(best > conf)
    cx, cy, w, h = raw[:4, keep]
    boxes = np.stack([cx - w * 0.5, cy - h * 0.5, cx + w * 0.5, cy + h * 0.5], axis=1).astype(np.float32)
    scores, classes = best[keep], raw[4:, keep].argmax(axis=0)
    order = nms_by_class(boxes, scores, classes, iou, max_det)
    return to_detections((boxes[order], scores[order], classes[order]), geometry)


GEOMETRIES = [Geometry(0.5, 0.0, 16.0, 128, 96), Geometry(0.25, 8.0, 0.0, 200, 256), Geometry(1.0, 0.0, 0.0, 64, 64)]


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 8), st.integers(1, 3), st.booleans())
def test_batch_decoder_gives_each_image_its_own_detections(seed, n, classes, channels_last):
    rng = np.random.default_rng(seed)
    raw = raw_batch(rng, n, classes, 60)
    geometries = [GEOMETRIES[i % len(GEOMETRIES)] for i in range(n)]
    decoder = YoloDecoder(classes, 0.25, 0.45, 7, None, head=False)
    given_raw = np.ascontiguousarray(raw.transpose(0, 2, 1)) if channels_last else raw
    got = decoder.decode_batch(given_raw, geometries)
    for image, geometry, dets in zip(raw, geometries, got):
        want = one_image_by_itself(image, 0.25, 0.45, 7, geometry)
        np.testing.assert_array_equal(dets.boxes, want.boxes)
        np.testing.assert_array_equal(dets.scores, want.scores)
        np.testing.assert_array_equal(dets.class_ids, want.class_ids)
        assert dets.boxes.dtype == np.float32 and dets.class_ids.dtype == np.int64


def test_an_unusable_image_fails_alone_and_the_others_are_decoded():
    raw = raw_batch(np.random.default_rng(3), 3, 2, 40)
    raw[1, 5, 7] = np.nan
    decoder = YoloDecoder(2, 0.25, 0.45, 100, None, head=False)
    first, second, third = decoder.decode_batch(raw, GEOMETRIES)
    assert isinstance(second, BadModelOutput) and "1 NaN" in str(second)
    assert len(first) > 0 and len(third) > 0
    np.testing.assert_array_equal(third.boxes, one_image_by_itself(raw[2], 0.25, 0.45, 100, GEOMETRIES[2]).boxes)


def test_the_head_form_fails_a_non_finite_image_alone():
    rows = np.zeros((2, 5, 6), np.float32)
    rows[:, 0] = [10, 10, 4, 4, 0.9, 1]  # one confident box per image
    rows[0, 3, 2] = np.inf
    decoder = YoloDecoder(2, 0.25, 0.45, 100, 5, head=True)
    bad, good = decoder.decode_batch(rows, GEOMETRIES[:2])
    assert isinstance(bad, BadModelOutput)
    assert good.class_ids.tolist() == [1] and good.scores.tolist() == [np.float32(0.9)]


def test_calling_the_decoder_decodes_one_image_and_raises_on_a_bad_one():
    raw = raw_batch(np.random.default_rng(5), 1, 2, 30)
    decoder = YoloDecoder(2, 0.25, 0.45, 100, None, head=False)
    np.testing.assert_array_equal(decoder(raw, GEOMETRIES[0]).boxes,
                                  to_detections(decode(raw, 2, 0.25, 0.45, 100)[0], GEOMETRIES[0]).boxes)
    raw[0, 0, 0] = np.inf
    try:
        decoder(raw, GEOMETRIES[0])
    except BadModelOutput as exc:
        assert "inf" in str(exc)
    else:
        raise AssertionError("a non-finite output must raise")


def test_a_box_on_the_image_edge_keeps_its_signed_zero_as_the_one_image_mapping_does():
    raw = np.zeros((1, 6, 2), np.float32)
    raw[0, :, 0] = [-0.0, 10, 0, 4, 0.9, 0.0]  # cx -0.0 and w 0: corners at -0.0 (the wire writes "-0.0")
    raw[0, :, 1] = [30, 30, 4, 4, 0.0, 0.8]
    geometry = Geometry(1.0, 0.0, 0.0, 64, 64)
    (got,) = YoloDecoder(2, 0.25, 0.45, 100, None, head=False).decode_batch(raw, [geometry])
    want = one_image_by_itself(raw[0], 0.25, 0.45, 100, geometry)
    np.testing.assert_array_equal(np.signbit(got.boxes), np.signbit(want.boxes))
    np.testing.assert_array_equal(got.boxes, want.boxes)
