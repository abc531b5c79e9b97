"""Decode YOLOv8-style detection output into boxes, scores and class ids.

Owns the meaning of the model's output, in its two forms:
- the raw tensor (`decode`): (N, 4+C, A) as YOLOv8 exports it, or the transposed
  (N, A, 4+C). Rows 0..3 are cx, cy, w, h in model-input pixels; rows 4.. are per-class
  scores that are already sigmoid (no objectness);
- the candidate head's (N, K, 6) (`decode_candidates`, `pipeline.backends.candidate_head`):
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

import numpy as np

from pipeline.backends.candidate_head import CANDIDATE_FIELDS
from pipeline.errors import ModelOutputError
from pipeline.messages import Detections, Geometry

Decoded = tuple[np.ndarray, np.ndarray, np.ndarray]  # boxes (K,4) f32, scores (K,) f32, ids (K,) i64


class BadModelOutput(ModelOutputError):
    """The model's output cannot be decoded (wrong shape, NaN or inf)."""


def decode(
    output: np.ndarray,
    num_classes: int,
    conf_threshold: float,
    iou_threshold: float,
    max_detections: int,
    max_candidates: int | None = None,
) -> list[Decoded]:
    """Per image of a raw output: boxes xyxy in model-input pixels, scores, class ids; best first.

    `max_candidates` None: every anchor above the threshold enters NMS; else the best
    that many by score (the candidate head's K, for a backend that runs no head).
    """
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    channels_first = _channels_first(output, num_classes)
    _check_finite(output)
    return [
        _decode_one(image, conf_threshold, iou_threshold, max_detections, max_candidates)
        for image in channels_first
    ]


def _channels_first(output: np.ndarray, num_classes: int) -> np.ndarray:
    """A (N, 4+C, A) view of `output`, whichever of the two layouts it has."""
    if not isinstance(output, np.ndarray) or output.ndim != 3:
        shape = getattr(output, "shape", type(output).__name__)
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


def _check_finite(output: np.ndarray) -> None:
    # max and min propagate NaN and expose +-inf; two float32 reductions cost about a third
    # of a float64 sum (0.07 vs 0.23 ms on a 84x8400 output). Only then pay for the count.
    if output.size == 0 or (np.isfinite(output.max()) and np.isfinite(output.min())):
        return
    nan = int(np.isnan(output).sum())
    inf = int(np.isinf(output).sum())
    if nan or inf:
        raise BadModelOutput(f"model output contains {nan} NaN and {inf} inf values of {output.size}")


def decode_candidates(output: np.ndarray, conf_threshold: float, iou_threshold: float,
                      max_detections: int) -> list[Decoded]:
    """Per image of the candidate head's (N, K, 6) output: as `decode`, on those K."""
    if not isinstance(output, np.ndarray) or output.ndim != 3 or output.shape[2] != CANDIDATE_FIELDS:
        shape = getattr(output, "shape", type(output).__name__)
        raise BadModelOutput(f"candidate head output has shape {shape}, expected (N, K, {CANDIDATE_FIELDS})")
    results = []
    for image in output:
        if not np.isfinite(image).all():  # the head spreads any NaN/inf of the raw tensor to every row
            raise BadModelOutput("model output contains NaN or inf values (seen through the candidate head)")
        keep = np.flatnonzero(image[:, 4] > conf_threshold)
        rows = image[keep]
        results.append(_suppress(rows[:, :4], rows[:, 4].astype(np.float32), rows[:, 5].astype(np.int64),
                                 iou_threshold, max_detections))
    return results


def _decode_one(pred: np.ndarray, conf: float, iou: float, max_det: int, max_cand: int | None) -> Decoded:
    """`pred` is (4+C, A) for one image."""
    class_scores = pred[4:]
    best = class_scores.max(axis=0)
    keep = np.flatnonzero(best > conf)
    if max_cand is not None and len(keep) > max_cand:
        # The K best by score, ties to the lower anchor index, as the head's TopK picks them.
        keep = np.sort(keep[np.argsort(-best[keep], kind="stable")[:max_cand]])
    scores = best[keep].astype(np.float32)
    class_ids = class_scores[:, keep].argmax(axis=0).astype(np.int64)
    return _suppress(pred[:4, keep].T, scores, class_ids, iou, max_det)


def _suppress(xywh: np.ndarray, scores: np.ndarray, class_ids: np.ndarray, iou: float, max_det: int) -> Decoded:
    with np.errstate(over="ignore"):
        boxes = _xywh_to_xyxy(xywh)
    if not np.isfinite(boxes).all():
        # Found by fuzzing: finite cx/w near float32's limit overflow to inf corners, which
        # would poison NMS (0 * inf) and the published boxes. No sane model emits them.
        raise BadModelOutput("model output has box coordinates beyond float32 range")
    order = nms_by_class(boxes, scores, class_ids, iou, max_det)
    return boxes[order], scores[order], class_ids[order]


def _xywh_to_xyxy(xywh: np.ndarray) -> np.ndarray:
    boxes = np.empty((len(xywh), 4), np.float32)
    half = xywh[:, 2:4] * 0.5
    boxes[:, :2] = xywh[:, :2] - half
    boxes[:, 2:] = xywh[:, :2] + half
    return boxes


def nms_by_class(
    boxes: np.ndarray,
    scores: np.ndarray,
    class_ids: np.ndarray,
    iou_threshold: float,
    max_keep: int | None = None,
) -> np.ndarray:
    """Class-aware NMS: boxes of different classes never suppress each other."""
    if len(boxes) == 0:
        return np.zeros(0, np.int64)
    # Shift each class into its own region of the plane, so one NMS pass never mixes them.
    span = float(np.abs(boxes).max()) * 2 + 1
    shifted = boxes.astype(np.float64) + (class_ids.astype(np.float64) * span)[:, None]
    return nms(shifted, scores, iou_threshold, max_keep)


def nms(
    boxes: np.ndarray, scores: np.ndarray, iou_threshold: float, max_keep: int | None = None
) -> np.ndarray:
    """Greedy NMS on (K, 4) xyxy boxes; indices of the kept boxes, highest score first.

    A box is suppressed when its IoU with an already kept box is above `iou_threshold`.
    """
    order = np.argsort(-scores, kind="stable")
    areas = _areas(boxes)
    limit = len(order) if max_keep is None else max_keep
    kept: list[int] = []
    while order.size and len(kept) < limit:
        top, rest = order[0], order[1:]
        kept.append(int(top))
        order = rest[_iou(boxes[top], areas[top], boxes[rest], areas[rest]) <= iou_threshold]
    return np.asarray(kept, np.int64)


def _areas(boxes: np.ndarray) -> np.ndarray:
    return np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None)


def _iou(box: np.ndarray, area: float, others: np.ndarray, other_areas: np.ndarray) -> np.ndarray:
    w = np.clip(np.minimum(box[2], others[:, 2]) - np.maximum(box[0], others[:, 0]), 0, None)
    h = np.clip(np.minimum(box[3], others[:, 3]) - np.maximum(box[1], others[:, 1]), 0, None)
    inter = w * h
    union = area + other_areas - inter
    # A zero union means two empty boxes: treat them as not overlapping rather than 0/0.
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def to_detections(decoded: Decoded, geometry: Geometry) -> Detections:
    """One image's decoded result as `Detections` in source pixels."""
    boxes, scores, class_ids = decoded
    if len(scores) == 0:
        return Detections.empty()
    source = geometry.to_source(boxes)
    # Clip here too: a box reaching into the letterbox padding must not leave the image
    # (Geometry.to_source's own clip writes into fancy-indexed copies; see the report).
    np.clip(source[:, 0::2], 0, geometry.src_width, out=source[:, 0::2])
    np.clip(source[:, 1::2], 0, geometry.src_height, out=source[:, 1::2])
    return Detections(source, scores.astype(np.float32), class_ids.astype(np.int64))
