"""Draws what the pipeline decided on a copy of the frame: boxes, classes, scores, the
verdict and its reasons, legible at a glance and in a README.

Owns the look of every annotated image (`pipeline eval --annotate`, later the archive
of failed parts). What crosses the boundary: a settled `Job` and the model's class
names in; a new BGR uint8 image out. The job's image is never modified.

Colours say the role, not the class: a detection that made the part FAIL (it appears
in a reason) is red, one the rules let pass (low score, small, outside the ROI) is amber.
The banner on top carries the outcome and the reasons, one per line.
"""

from __future__ import annotations

import cv2
import numpy as np

from pipeline.core.messages import Job, Outcome, Reason, ReasonCode

_FONT = cv2.FONT_HERSHEY_SIMPLEX
_RED, _AMBER, _GREEN, _GREY = (40, 40, 230), (0, 190, 255), (60, 180, 60), (150, 150, 150)
_OUTCOME_COLOUR = {Outcome.PASS: _GREEN, Outcome.FAIL: _RED, Outcome.NOT_INSPECTED: _AMBER, Outcome.ERROR: _GREY}
_MAX_REASON_LINES = 4


def annotate(image: np.ndarray | None, job: Job, class_names: tuple[str, ...] | list[str]) -> np.ndarray:
    """A copy of `image` (BGR or gray; the job's own image when None) with the job drawn on it."""
    source = job.frame.image if image is None else image
    if source is None:
        raise ValueError(f"camera {job.frame.camera_id} frame {job.frame.frame_id} has no image to annotate")
    canvas = cv2.cvtColor(source, cv2.COLOR_GRAY2BGR) if source.ndim == 2 else source.copy()
    scale = max(1.0, min(canvas.shape[:2]) / 480)  # text and lines grow with the image
    if job.detections is not None:
        _draw_detections(canvas, job, class_names, scale)
    return _with_banner(canvas, job, scale)


def _draw_detections(canvas: np.ndarray, job: Job, class_names, scale: float) -> None:
    det = job.detections
    failing = _failing_boxes(job)
    thickness = max(1, round(2 * scale))
    boxes = [tuple(round(float(v)) for v in box) for box in det.boxes]
    for (x1, y1, x2, y2), box in zip(boxes, det.boxes):  # all boxes first: tags go on top
        colour = _RED if _is_failing(box, failing) else _AMBER
        cv2.rectangle(canvas, (x1 - 1, y1 - 1), (x2 + 1, y2 + 1), colour, thickness, cv2.LINE_AA)
    taken: list[tuple[int, int, int, int]] = []
    for (x1, y1, _x2, y2), box, score, class_id in zip(boxes, det.boxes, det.scores, det.class_ids):
        colour = _RED if _is_failing(box, failing) else _AMBER
        name = class_names[class_id] if 0 <= class_id < len(class_names) else f"class {class_id}"
        _label(canvas, f"{name} {score:.2f}", (x1 - 1, y1 - 1, y2 + 1), colour, scale, taken)


def _failing_boxes(job: Job) -> np.ndarray:
    reasons = job.verdict.reasons if job.verdict is not None else ()
    boxes = [r.box for r in reasons if r.code is ReasonCode.DEFECT and r.box is not None]
    return np.asarray(boxes, np.float32).reshape(-1, 4)


def _is_failing(box: np.ndarray, failing: np.ndarray) -> bool:
    return bool(len(failing)) and bool(np.any(np.all(np.abs(failing - box) < 1e-3, axis=1)))


def _label(canvas: np.ndarray, text: str, anchor: tuple[int, int, int], colour, scale: float,
           taken: list[tuple[int, int, int, int]]) -> None:
    """Text on a filled tag above the box (x, top, bottom), or below it when the space
    above is off the image or holds another tag; `taken` collects the tags drawn."""
    font_scale, thick = 0.5 * scale, max(1, round(scale))
    (w, h), base = cv2.getTextSize(text, _FONT, font_scale, thick)
    tag_w, tag_h = w + 4, h + base + 4
    x = min(max(0, anchor[0]), max(0, canvas.shape[1] - tag_w))
    above, below = anchor[1] - tag_h, anchor[2]
    candidates = [y for y in (above, below, below + tag_h, above - tag_h) if 0 <= y <= canvas.shape[0] - tag_h]
    free = [y for y in candidates if not any(_overlaps((x, y, x + tag_w, y + tag_h), t) for t in taken)]
    top = (free or candidates or [max(0, above)])[0]
    taken.append((x, top, x + tag_w, top + tag_h))
    cv2.rectangle(canvas, (x, top), (x + tag_w, top + tag_h), colour, -1)
    cv2.putText(canvas, text, (x + 2, top + h + 2), _FONT, font_scale, (0, 0, 0), thick, cv2.LINE_AA)


def _overlaps(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _with_banner(canvas: np.ndarray, job: Job, scale: float) -> np.ndarray:
    """The image below a banner: outcome, camera and frame, then the reasons."""
    verdict = job.verdict
    outcome = verdict.outcome if verdict is not None else None
    lines = [_reason_text(r) for r in (verdict.reasons if verdict is not None else ())]
    if outcome is Outcome.PASS and not lines:
        below = len(job.detections) if job.detections is not None else 0
        lines = [f"no defect: {below} detection(s) below the rules" if below else "no defect found"]
    if len(lines) > _MAX_REASON_LINES:
        lines = lines[:_MAX_REASON_LINES - 1] + [f"... and {len(lines) - _MAX_REASON_LINES + 1} more"]
    font_scale, thick = 0.5 * scale, max(1, round(scale))
    line_h = int(22 * scale)
    head_h = int(34 * scale)
    banner = np.full((head_h + line_h * len(lines) + int(8 * scale), canvas.shape[1], 3), 30, np.uint8)
    colour = _OUTCOME_COLOUR.get(outcome, _GREY)
    title = outcome.value if outcome is not None else "NO VERDICT"
    cv2.putText(banner, title, (int(8 * scale), int(26 * scale)), _FONT, 0.9 * scale, colour, max(2, thick + 1),
                cv2.LINE_AA)
    info = f"camera {job.frame.camera_id}  frame {job.frame.frame_id}" + (" LATE" if verdict and verdict.late else "")
    tw = cv2.getTextSize(info, _FONT, font_scale, thick)[0][0]
    cv2.putText(banner, info, (canvas.shape[1] - tw - int(8 * scale), int(24 * scale)), _FONT, font_scale,
                (220, 220, 220), thick, cv2.LINE_AA)
    for i, line in enumerate(lines):
        line = _fit(line, canvas.shape[1] - int(16 * scale), font_scale, thick)
        cv2.putText(banner, line, (int(8 * scale), head_h + line_h * i + int(14 * scale)), _FONT, font_scale,
                    (235, 235, 235), thick, cv2.LINE_AA)
    return np.vstack([banner, canvas])


def _reason_text(r: Reason) -> str:
    if r.code is ReasonCode.DEFECT:
        area = f"{r.area_mm2:.1f} mm2" if r.area_mm2 is not None else f"{r.area_px2:.0f} px2"
        rule = (r.rule or "").split(" found ", 1)[-1]  # the limits; the class is already said
        return f"{r.class_name} {r.score:.2f}, {area}: {rule}"
    return f"{r.code.value}: {r.detail}" if r.detail else r.code.value


def _fit(text: str, width: int, font_scale: float, thick: int) -> str:
    """`text`, cut with '...' where it would run past `width` pixels."""
    if cv2.getTextSize(text, _FONT, font_scale, thick)[0][0] <= width:
        return text
    while len(text) > 4 and cv2.getTextSize(text + "...", _FONT, font_scale, thick)[0][0] > width:
        text = text[:-1]
    return text + "..."
