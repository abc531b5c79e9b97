"""Greedy class-aware non-maximum suppression, for one image or a whole batch at once.

Owns one rule, Ultralytics' `non_max_suppression` (multi_label off, not class-agnostic):
candidates in order of score (ties: the earlier candidate first), a box is kept unless
its IoU with an already kept box of its own class is above the threshold, and the first
`max_keep` kept boxes of an image are its result.

`nms` / `nms_by_class` run that greedy loop on one image. `nms_batched` gives exactly
the same answer for every image of a batch with one loop for all of them: the batch's
candidates are sorted into runs of one (image, class), and each round keeps the best
open candidate of every run and drops, in one vectorised IoU over all runs, the open
candidates it suppresses. Runs never interact (classes are apart, images are apart), so
this is each run's greedy loop, stepped side by side: the rounds are as many as the most
boxes one class keeps in one image, not the sum over the batch (when two runs or fewer
are left open, `nms` finishes them; a batch of one image is `nms_by_class`), and every
IoU is the same float64 arithmetic on the same class-shifted boxes as `nms_by_class`, so
the results are identical, bit for bit.
"""

from __future__ import annotations

import numpy as np


def nms_by_class(boxes: np.ndarray, scores: np.ndarray, class_ids: np.ndarray, iou_threshold: float,
                 max_keep: int | None = None) -> np.ndarray:
    """Class-aware NMS of one image: boxes of different classes never suppress each other."""
    if len(boxes) == 0:
        return np.zeros(0, np.int64)
    return nms(_shift_classes(boxes, class_ids, _span(boxes)), scores, iou_threshold, max_keep)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float, max_keep: int | None = None) -> np.ndarray:
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


def nms_batched(boxes: np.ndarray, scores: np.ndarray, class_ids: np.ndarray, image_ids: np.ndarray,
                iou_threshold: float, max_keep: int) -> np.ndarray:
    """`nms_by_class` of every image of a batch. The rows are the candidates of all images,
    `image_ids` non-decreasing; returns the kept rows' indices, image by image, each
    image's in its greedy order (score, then row), at most `max_keep` per image."""
    n = len(scores)
    if n == 0:
        return np.zeros(0, np.int64)
    if image_ids[0] == image_ids[-1]:  # one image (batch 1, or one image with candidates): its own loop
        return nms_by_class(boxes, scores, class_ids, iou_threshold, max_keep)
    starts = np.flatnonzero(_changes(image_ids))
    spans = np.maximum.reduceat(np.abs(boxes).max(axis=1), starts).astype(np.float64) * 2 + 1
    shifted = _shift_classes(boxes, class_ids, np.repeat(spans, np.diff(starts, append=n)))
    greedy = np.lexsort((-scores, image_ids))  # per image, by score; lexsort is stable: ties keep row order
    grouped = greedy[np.lexsort((class_ids[greedy], image_ids[greedy]))]  # (image, class) runs, greedy order inside
    runs = np.cumsum(_changes(image_ids[grouped]) | _changes(class_ids[grouped]))
    kept = np.zeros(n, bool)
    kept[_greedy_rounds(shifted, scores, grouped, runs, iou_threshold)] = True
    result = greedy[kept[greedy]]
    rank = np.arange(len(result)) - np.searchsorted(image_ids[result], image_ids[result])
    return result[rank < max_keep]


STRAGGLERS = 2  # runs still open at which stepping them one by one costs fewer numpy calls than rounds


def _greedy_rounds(shifted: np.ndarray, scores: np.ndarray, grouped: np.ndarray, runs: np.ndarray,
                   iou_threshold: float) -> np.ndarray:
    """The greedy loop of `nms`, one step of every run at once: each round keeps the best
    open candidate of every run and drops the open ones it suppresses. `grouped` lists
    the rows run by run, in greedy order inside each; returns the kept rows. The last
    few runs with boxes left (a cluster that keeps several) finish in `nms` itself."""
    areas = _areas(shifted)
    kept = []
    open_rows, open_runs = grouped, runs
    with np.errstate(invalid="ignore", divide="ignore"):  # 0 / 0 for two empty boxes: handled below
        while len(open_rows):
            head = _changes(open_runs)  # the first open row of each run
            heads = open_rows[head]
            if len(heads) <= STRAGGLERS < len(open_rows):
                kept += _finish_runs(shifted, scores, open_rows, head, iou_threshold)
                break
            kept.append(heads)
            if len(heads) == len(open_rows):
                break
            rest = ~head
            top = heads[np.cumsum(head)[rest] - 1]  # each remaining row's run head
            others = open_rows[rest]
            a, b = shifted[top], shifted[others]
            wh = np.maximum(np.minimum(a[:, 2:], b[:, 2:]) - np.maximum(a[:, :2], b[:, :2]), 0)
            inter = wh[:, 0] * wh[:, 1]
            union = areas[top] + areas[others] - inter
            # as `_iou`: IoU <= threshold survives, and a zero union (two empty boxes) counts as IoU 0
            survive = (inter / union <= iou_threshold) | (union == 0)
            open_rows, open_runs = others[survive], open_runs[rest][survive]
    return np.concatenate(kept)


def _finish_runs(shifted: np.ndarray, scores: np.ndarray, open_rows: np.ndarray, head: np.ndarray,
                 iou_threshold: float) -> list[np.ndarray]:
    """`nms` on what is open of each run (its rows in greedy order already, which `nms`'
    stable sort by score keeps)."""
    bounds = np.flatnonzero(head).tolist() + [len(open_rows)]
    done = []
    for start, end in zip(bounds, bounds[1:]):
        rows = open_rows[start:end]
        done.append(rows[nms(shifted[rows], scores[rows], iou_threshold)])
    return done


def _changes(values: np.ndarray) -> np.ndarray:
    """True where a value differs from the one before it (and at the first)."""
    out = np.empty(len(values), bool)
    out[:1] = True
    np.not_equal(values[1:], values[:-1], out=out[1:])
    return out


def _span(boxes: np.ndarray) -> float:
    return float(np.abs(boxes).max()) * 2 + 1


def _shift_classes(boxes: np.ndarray, class_ids: np.ndarray, span: float | np.ndarray) -> np.ndarray:
    """The boxes in float64, each class moved into its own region of the plane (`span`
    wider than the image's largest coordinate), so boxes of different classes never overlap."""
    return boxes.astype(np.float64) + (class_ids.astype(np.float64) * span)[:, None]


# np.clip(x, 0, None) is np.maximum(x, 0) (numpy's _clip calls exactly that), without the wrapper.
def _areas(boxes: np.ndarray) -> np.ndarray:
    return np.maximum(boxes[:, 2] - boxes[:, 0], 0) * np.maximum(boxes[:, 3] - boxes[:, 1], 0)


def _iou(box: np.ndarray, area: float, others: np.ndarray, other_areas: np.ndarray) -> np.ndarray:
    w = np.maximum(np.minimum(box[2], others[:, 2]) - np.maximum(box[0], others[:, 0]), 0)
    h = np.maximum(np.minimum(box[3], others[:, 3]) - np.maximum(box[1], others[:, 1]), 0)
    inter = w * h
    union = area + other_areas - inter
    # A zero union means two empty boxes: treat them as not overlapping rather than 0/0.
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
