"""Matching detections to ground-truth boxes, shared by `pipeline eval` and the conversion
accuracy gate.

Owns the rule that decides a true positive: IoU of at least 0.5, greedy by score.
"""

from __future__ import annotations

import numpy as np

IOU_MATCH = 0.5


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix of (N, 4) against (M, 4) xyxy boxes."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area_a = (a[:, 2:] - a[:, :2]).prod(-1)
    area_b = (b[:, 2:] - b[:, :2]).prod(-1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def match(pred_boxes, pred_scores, gt_boxes, iou_threshold: float = IOU_MATCH) -> tuple[np.ndarray, np.ndarray]:
    """Greedy matching of one class in one frame: (pred is true positive, truth was found).

    Highest score first, each prediction takes the unmatched truth it overlaps most,
    if that overlap reaches `iou_threshold`; a second prediction on a found truth is a
    false positive (a duplicate NMS let through).
    """
    tp = np.zeros(len(pred_boxes), bool)
    found = np.zeros(len(gt_boxes), bool)
    if len(pred_boxes) == 0 or len(gt_boxes) == 0:
        return tp, found
    iou = box_iou(np.asarray(pred_boxes, np.float32), np.asarray(gt_boxes, np.float32))
    for i in np.argsort(-np.asarray(pred_scores), kind="stable"):
        free = np.where(found, -1.0, iou[i])
        j = int(free.argmax())
        if free[j] >= iou_threshold:
            tp[i], found[j] = True, True
    return tp, found
