"""Which anchors learn which defect (task-aligned assignment), and the training loss.

Owns the targets and the loss. For each ground-truth box the candidates are the anchor
points near its centre: within its half-size, widened to at least `radius` strides, so a
1-2 px thin scratch still has candidates on every level. Among the candidates, the `topk`
with the best alignment `score ** alpha * iou ** beta` (the predicted score of the true
class and the predicted box's IoU with the truth) become positives; an anchor claimed by
two boxes keeps the one it overlaps most. Class targets are soft: the alignment,
rescaled so each box's best anchor gets that anchor's IoU, so scores learn to track box
quality (what NMS and the confidence threshold rely on).

Loss: BCE over all anchors and classes with those soft targets, plus GIoU and a small
L1 (in strides) on the positives, weighted by their targets; all normalised by the sum of
the targets, as YOLOv8 does.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class AssignConfig:
    topk: int = 9
    radius: float = 2.5
    alpha: float = 0.5
    beta: float = 6.0


def pairwise_iou(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """IoU of (B, G, 4) against (B, A, 4) xyxy -> (B, G, A)."""
    a, b = a[:, :, None], b[:, None]
    wh = (torch.minimum(a[..., 2:], b[..., 2:]) - torch.maximum(a[..., :2], b[..., :2])).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    area_a = (a[..., 2:] - a[..., :2]).prod(-1)
    area_b = (b[..., 2:] - b[..., :2]).prod(-1)
    return inter / (area_a + area_b - inter + eps)


def candidates(gt: torch.Tensor, points: torch.Tensor, strides: torch.Tensor, radius: float) -> torch.Tensor:
    """(B, G, A) bool: anchor centres within the box's half-size or `radius` strides of its centre."""
    centre = (gt[..., :2] + gt[..., 2:]) / 2
    half = (gt[..., 2:] - gt[..., :2]) / 2
    reach = torch.maximum(half[:, :, None], radius * strides[None, None])  # (B, G, A, 2)
    return ((points[None, None] - centre[:, :, None]).abs() <= reach).all(-1)


@torch.no_grad()
def assign(pred_xyxy, pred_scores, gt_boxes, gt_classes, points, strides, cfg: AssignConfig):
    """Targets per anchor: boxes (B, A, 4), soft class scores (B, A, C), positive mask (B, A)."""
    valid = gt_classes >= 0  # (B, G)
    cls = gt_classes.clamp(min=0)
    iou = pairwise_iou(gt_boxes, pred_xyxy)  # (B, G, A)
    score = pred_scores.gather(2, cls[:, None, :].expand(-1, pred_scores.shape[1], -1)).transpose(1, 2)
    near = candidates(gt_boxes, points, strides, cfg.radius) & valid[..., None]
    # a tiny prior keeps the choice sensible while predictions are still random
    align = score.pow(cfg.alpha) * iou.pow(cfg.beta) + 1e-9 * near
    align = align * near
    top = align.topk(min(cfg.topk, align.shape[-1]), dim=-1).indices
    chosen = torch.zeros_like(near).scatter_(-1, top, True) & near
    chosen = _one_box_per_anchor(chosen, iou)
    return _targets(chosen, align, iou, gt_boxes, cls, pred_scores.shape[-1])


def _one_box_per_anchor(chosen: torch.Tensor, iou: torch.Tensor) -> torch.Tensor:
    contested = chosen.sum(1, keepdim=True) > 1
    best = F.one_hot((iou * chosen).argmax(1), chosen.shape[1]).transpose(1, 2).bool()
    return torch.where(contested, best & chosen, chosen)


def _targets(chosen, align, iou, gt_boxes, cls, num_classes):
    positive = chosen.any(1)  # (B, A)
    owner = chosen.float().argmax(1)  # (B, A) index of the box
    boxes = gt_boxes.gather(1, owner[..., None].expand(-1, -1, 4))
    align = align * chosen
    best_align = align.amax(-1, keepdim=True)
    best_iou = (iou * chosen).amax(-1, keepdim=True)
    quality = (align / (best_align + 1e-9) * best_iou).amax(1)  # (B, A)
    labels = cls.gather(1, owner)
    scores = F.one_hot(labels, num_classes).float() * (quality * positive)[..., None]
    return boxes, scores, positive


def giou(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Element-wise generalised IoU of (..., 4) xyxy boxes."""
    wh = (torch.minimum(a[..., 2:], b[..., 2:]) - torch.maximum(a[..., :2], b[..., :2])).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    union = (a[..., 2:] - a[..., :2]).prod(-1) + (b[..., 2:] - b[..., :2]).prod(-1) - inter
    hull = (torch.maximum(a[..., 2:], b[..., 2:]) - torch.minimum(a[..., :2], b[..., :2])).prod(-1)
    iou = inter / (union + eps)
    return iou - (hull - union) / (hull + eps)


def detection_loss(logits, pred_xyxy, targets, strides, box_weight: float = 2.5, l1_weight: float = 0.5):
    """Scalar loss and its parts (cls, box, l1) for logging."""
    t_boxes, t_scores, positive = targets
    norm = t_scores.sum().clamp(min=1.0)
    cls = F.binary_cross_entropy_with_logits(logits.float(), t_scores, reduction="sum") / norm
    if not positive.any():
        zero = pred_xyxy.sum() * 0
        return cls + zero, (cls.detach(), zero.detach(), zero.detach())
    w = t_scores.sum(-1)[positive]
    p, t = pred_xyxy[positive].float(), t_boxes[positive]
    box = ((1 - giou(p, t)) * w).sum() / norm
    scale = strides[None].expand(positive.shape[0], -1, -1)[positive]  # (P, 1): L1 in strides
    l1 = ((p - t).abs() / scale).sum(-1).mul(w).sum() / norm
    total = cls + box_weight * box + l1_weight * l1
    return total, (cls.detach(), box.detach(), l1.detach())
