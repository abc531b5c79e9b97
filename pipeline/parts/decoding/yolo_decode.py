"""Decode YOLOv8-style detection output into boxes, scores and class ids.

Owns the meaning of the model's output, in its two forms:
- the raw tensor (`decode`): (N, 4+C, A) as YOLOv8 exports it, or the transposed
  (N, A, 4+C). Rows 0..3 are cx, cy, w, h in model-input pixels; rows 4.. are per-class
  scores that are already sigmoid (no objectness);
- the candidate head's (N, K, 6) (`decode_candidates`, `pipeline.parts.modelfile.candidate_head`):
  the K best anchors by score, each cx, cy, w, h, score, class id.
Both then do the same thing, matching Ultralytics' `non_max_suppression` (multi_label
off, class-aware): anchors whose best class score is > `confidence` are candidates; if
more than `max_candidates` (max_nms) pass, the best by score are kept; per-class greedy
NMS (a box goes when its IoU with a kept box of its class is > `iou`); the first
`max_detections` (max_det) kept. With fewer than K candidates, both forms give
identical detections.

A tensor containing NaN/inf or of the wrong shape raises `BadModelOutput`, so a broken
model becomes an ERROR verdict, never a silent PASS. `to_detections` maps one image's
result back to source pixels through the letterbox `Geometry`.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np

from pipeline.core.errors import ModelOutputError
from pipeline.core.messages import Detections, Geometry
from pipeline.parts.decoding.nms import nms_batched
from pipeline.parts.modelfile.candidate_head import CANDIDATE_FIELDS

Decoded = tuple[np.ndarray, np.ndarray, np.ndarray]  # boxes (K,4) f32, scores (K,) f32, ids (K,) i64


class BadModelOutput(ModelOutputError):
    """The model's output cannot be decoded (wrong shape, NaN or inf)."""


ImageResult = Decoded | BadModelOutput  # one image's result in a batch: its detections, or why it has none


class YoloDecoder:
    """The `Decoder` of one model and config: the candidate head's K x 6 rows when the
    backend runs the head (`head`), else the raw tensor with the same K cap on the host."""

    def __init__(self, num_classes: int, confidence: float, iou: float, max_detections: int,
                 max_candidates: int | None, head: bool):
        self.num_classes = num_classes
        self.confidence, self.iou, self.max_detections = confidence, iou, max_detections
        self.max_candidates = max_candidates
        self.head = head

    def decode_batch(self, raw: np.ndarray, geometries: Sequence[Geometry]) -> list[Detections | Exception]:
        if self.head:
            batch = decode_candidates_batch(raw, self.confidence, self.iou, self.max_detections)
        else:
            batch = decode_batch(raw, self.num_classes, self.confidence, self.iou, self.max_detections,
                                 self.max_candidates)
        return list(batch.detections(geometries))

    def __call__(self, raw: np.ndarray, geometry: Geometry) -> Detections:
        (result,) = self.decode_batch(raw[:1], [geometry])
        if isinstance(result, Exception):
            raise result
        return result


def decode(
    output: np.ndarray,
    num_classes: int,
    conf_threshold: float,
    iou_threshold: float,
    max_detections: int,
    max_candidates: int | None = None,
) -> list[Decoded]:
    """Per image of a raw output: boxes xyxy in model-input pixels, scores, class ids; best
    first. BadModelOutput if any image's output is unusable (`decode_batch` tells which).

    `max_candidates` None: every anchor above the threshold enters NMS; else the best
    that many by score (the candidate head's K, for a backend that runs no head).
    """
    return _all_or_raise(decode_batch(output, num_classes, conf_threshold, iou_threshold, max_detections,
                                      max_candidates).images())


def decode_candidates(output: np.ndarray, conf_threshold: float, iou_threshold: float,
                      max_detections: int) -> list[Decoded]:
    """Per image of the candidate head's (N, K, 6) output: as `decode`, on those K."""
    return _all_or_raise(decode_candidates_batch(output, conf_threshold, iou_threshold, max_detections).images())


class DecodedBatch(NamedTuple):
    """A batch's detections in model-input pixels: the kept rows of every image, image by
    image (image i's are rows bounds[i]:bounds[i+1], best first), and per image the
    reason its output was unusable, else None."""

    boxes: np.ndarray  # (m, 4) float32 xyxy
    scores: np.ndarray  # (m,) float32
    class_ids: np.ndarray  # (m,) int64
    bounds: list[int]  # N + 1 row offsets
    problems: list[BadModelOutput | None]

    def images(self) -> list[ImageResult]:
        """Each image's (boxes, scores, class ids), views of the batch's arrays, or its error."""
        b = self.bounds
        return [problem if problem is not None else (self.boxes[b[i]:b[i + 1]], self.scores[b[i]:b[i + 1]],
                                                     self.class_ids[b[i]:b[i + 1]])
                for i, problem in enumerate(self.problems)]

    def detections(self, geometries: Sequence[Geometry]) -> list[Detections | BadModelOutput]:
        """Each image's `to_detections` through its own geometry, mapped in one pass."""
        if not len(self.scores):  # nothing detected in any image (a batch of clean parts)
            return [problem if problem is not None else Detections.empty() for problem in self.problems]
        rows = np.diff(self.bounds)
        source = _to_source(self.boxes, [(g, n) for g, n in zip(geometries, rows.tolist())])
        b = self.bounds
        return [problem if problem is not None else Detections(source[b[i]:b[i + 1]], self.scores[b[i]:b[i + 1]],
                                                               self.class_ids[b[i]:b[i + 1]])
                for i, problem in enumerate(self.problems)]


def decode_batch(output: np.ndarray, num_classes: int, conf_threshold: float, iou_threshold: float,
                 max_detections: int, max_candidates: int | None = None) -> DecodedBatch:
    """`decode` of a whole batch in one pass; an unusable image fails alone."""
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    channels_first = _channels_first(output, num_classes)
    problems = _finite_problems(output)
    class_scores = channels_first[:, 4:]
    best = class_scores.max(axis=1)  # (N, A): each anchor's best class score
    passing = best > conf_threshold
    unusable = [i for i, problem in enumerate(problems) if problem is not None]
    if unusable:
        passing[unusable] = False
    if not passing.any():
        return _nothing_detected(problems)
    if max_candidates is not None:
        _keep_best(passing, best, max_candidates)
    images, anchors = np.nonzero(passing)
    rows = _Candidates(channels_first[images, :4, anchors], best[images, anchors].astype(np.float32),
                       class_scores[images, :, anchors].argmax(axis=1).astype(np.int64), images)
    return _suppress(rows, problems, iou_threshold, max_detections)


def decode_candidates_batch(output: np.ndarray, conf_threshold: float, iou_threshold: float,
                            max_detections: int) -> DecodedBatch:
    """`decode_candidates` of a whole batch in one pass; an unusable image fails alone."""
    if not isinstance(output, np.ndarray) or output.ndim != 3 or output.shape[2] != CANDIDATE_FIELDS:
        shape = output.shape if isinstance(output, np.ndarray) else type(output).__name__
        raise BadModelOutput(f"candidate head output has shape {shape}, expected (N, K, {CANDIDATE_FIELDS})")
    # max and min propagate NaN and expose +-inf: two reductions instead of a boolean copy
    finite = (np.isfinite(output.max(axis=(1, 2))) & np.isfinite(output.min(axis=(1, 2)))).tolist()
    # the head spreads any NaN/inf of the raw tensor to every row
    problems: list[BadModelOutput | None] = [
        None if ok else BadModelOutput("model output contains NaN or inf values (seen through the candidate head)")
        for ok in finite]
    passing = output[:, :, 4] > conf_threshold
    if not all(finite):
        passing[[i for i, ok in enumerate(finite) if not ok]] = False
    if not passing.any():
        return _nothing_detected(problems)
    images, ranks = np.nonzero(passing)
    chosen = output[images, ranks]
    rows = _Candidates(chosen[:, :4], chosen[:, 4].astype(np.float32), chosen[:, 5].astype(np.int64), images)
    return _suppress(rows, problems, iou_threshold, max_detections)


def _channels_first(output: np.ndarray, num_classes: int) -> np.ndarray:
    """A (N, 4+C, A) view of `output`, whichever of the two layouts it has."""
    if not isinstance(output, np.ndarray) or output.ndim != 3:
        shape = output.shape if isinstance(output, np.ndarray) else type(output).__name__
        raise BadModelOutput(f"model output has shape {shape}, expected 3-D (N, 4+C, A)")
    channels = 4 + num_classes
    # Checked first so an ambiguous square tensor reads as YOLOv8's own layout.
    if output.shape[1] == channels:
        return output
    if output.shape[2] == channels:
        return output.transpose(0, 2, 1)
    raise BadModelOutput(
        f"model output has shape {output.shape}: no axis equals 4 + {num_classes} classes"
    )


def _finite_problems(output: np.ndarray) -> list[BadModelOutput | None]:
    """Per image, why its raw output is unusable (NaN or inf), else None."""
    # max and min propagate NaN and expose +-inf; two float32 reductions cost about a third
    # of a float64 sum (0.07 vs 0.23 ms on a 84x8400 output). Only then pay for the count.
    if output.size == 0:
        return [None] * len(output)
    fine = np.isfinite(output.max(axis=(1, 2))) & np.isfinite(output.min(axis=(1, 2)))
    return [None if ok else _non_finite(image) for ok, image in zip(fine.tolist(), output)]


def _non_finite(image: np.ndarray) -> BadModelOutput:
    nan = int(np.isnan(image).sum())
    inf = int(np.isinf(image).sum())
    return BadModelOutput(f"model output contains {nan} NaN and {inf} inf values of {image.size}")


def _keep_best(passing: np.ndarray, best: np.ndarray, max_candidates: int) -> None:
    """Cut each image's passing anchors to the `max_candidates` best by score, ties to the
    lower anchor index, as the head's TopK picks them (rare: only a flooding image)."""
    for i in np.flatnonzero(passing.sum(axis=1) > max_candidates).tolist():
        keep = np.flatnonzero(passing[i])
        passing[i] = False
        passing[i, keep[np.argsort(-best[i, keep], kind="stable")[:max_candidates]]] = True


class _Candidates(NamedTuple):
    """The candidates of every image of a batch, image by image, in candidate order."""

    xywh: np.ndarray  # (n, 4) cx cy w h
    scores: np.ndarray  # (n,) float32
    class_ids: np.ndarray  # (n,) int64
    images: np.ndarray  # (n,) which image each row belongs to, non-decreasing


def _nothing_detected(problems: list[BadModelOutput | None]) -> DecodedBatch:
    """No anchor passed in any image: the common case on a good line (np.nonzero alone
    costs more than the whole decode then), so it skips the gather and NMS."""
    return DecodedBatch(np.empty((0, 4), np.float32), np.empty(0, np.float32), np.empty(0, np.int64),
                        [0] * (len(problems) + 1), problems)


def _suppress(rows: _Candidates, problems: list[BadModelOutput | None], iou: float, max_det: int) -> DecodedBatch:
    with np.errstate(over="ignore"):
        boxes = _xywh_to_xyxy(rows.xywh)
    overflowed = [] if np.isfinite(boxes).all() else np.unique(rows.images[~np.isfinite(boxes).all(axis=1)]).tolist()
    if overflowed:
        # Found by fuzzing: finite cx/w near float32's limit overflow to inf corners, which
        # would poison NMS (0 * inf) and the published boxes. No sane model emits them.
        for i in overflowed:
            problems[i] = BadModelOutput("model output has box coordinates beyond float32 range")
        usable = ~np.isin(rows.images, overflowed)
        boxes, rows = boxes[usable], _Candidates(*(column[usable] for column in rows))
    kept = nms_batched(boxes, rows.scores, rows.class_ids, rows.images, iou, max_det)
    bounds = np.searchsorted(rows.images[kept], np.arange(len(problems) + 1)).tolist()
    return DecodedBatch(boxes[kept], rows.scores[kept], rows.class_ids[kept], bounds, problems)


def _all_or_raise(results: list[ImageResult]) -> list[Decoded]:
    for result in results:
        if isinstance(result, BadModelOutput):
            raise result
    return results  # type: ignore[return-value]


def _xywh_to_xyxy(xywh: np.ndarray) -> np.ndarray:
    boxes = np.empty((len(xywh), 4), np.float32)
    half = xywh[:, 2:4] * 0.5
    boxes[:, :2] = xywh[:, :2] - half
    boxes[:, 2:] = xywh[:, :2] + half
    return boxes


def _to_source(boxes: np.ndarray, geometries: list[tuple[Geometry, int]]) -> np.ndarray:
    """`to_detections`' mapping of runs of rows, each run with its own geometry: one pass
    for all rows when the geometries are equal (cameras of one size), else one per run.
    Scalar arithmetic as in `to_detections`, never per-row arrays: np.clip with array
    bounds treats -0.0 differently from np.clip with scalar ones."""
    first = geometries[0][0] if geometries else None
    if first is None or all(g == first for g, _ in geometries):
        return _mapped(boxes, first) if len(boxes) else np.empty((0, 4), np.float32)
    bounds = np.cumsum([0] + [n for _, n in geometries]).tolist()
    return np.concatenate([np.empty((0, 4), np.float32)] +
                          [_mapped(boxes[a:b], g) for (g, _), a, b in zip(geometries, bounds, bounds[1:]) if b > a])


def _mapped(boxes: np.ndarray, geometry: Geometry) -> np.ndarray:
    # Geometry.to_source clips to the image (its column slices are views, so the clip
    # writes through): a box reaching into the letterbox padding never leaves the image.
    return geometry.to_source(boxes)


def to_detections(decoded: Decoded, geometry: Geometry) -> Detections:
    """One image's decoded result as `Detections` in source pixels."""
    boxes, scores, class_ids = decoded
    if len(scores) == 0:
        return Detections.empty()
    return Detections(_mapped(boxes, geometry), scores.astype(np.float32), class_ids.astype(np.int64))
