"""Decision rules: detections of one frame -> PASS or FAIL with the reasons that fired.

Owns the meaning of the `rules` config section. Per class (or the default rule): a
detection qualifies when its score >= min_confidence, its area >= min_area_px2 (and
>= min_area_mm2 through the camera's mm_per_px), and its centre lies inside an include
ROI polygon (when any are given) and outside every exclude polygon. A class with more
than max_count qualifying detections makes the part FAIL; every qualifying detection of
that class becomes a reason naming the rule that fired.
"""

from __future__ import annotations

import cv2
import numpy as np

from pipeline.config.models import ClassRuleConfig, RulesConfig
from pipeline.core.messages import Detections, Outcome, Reason, ReasonCode, Verdict

PASS = Verdict(Outcome.PASS)


class RuleBook:
    def __init__(self, rules: RulesConfig, class_names: tuple[str, ...]):
        self.rules = rules
        self.class_names = class_names
        self._include = [np.asarray(p, np.float32) for p in rules.roi.include]
        self._exclude = [np.asarray(p, np.float32) for p in rules.roi.exclude]
        self._per_class = [rules.classes.get(name, rules.default) for name in class_names]
        self._ignored = {class_names.index(n) for n in rules.ignore_classes if n in class_names}

    def unknown_rule_classes(self) -> list[str]:
        """Classes named in the rules that the model does not have (a likely typo)."""
        named = set(self.rules.classes) | set(self.rules.ignore_classes)
        return sorted(named - set(self.class_names))

    def judge(self, det: Detections, mm_per_px: float | None) -> Verdict:
        if len(det) == 0:
            return PASS
        areas = (det.boxes[:, 2] - det.boxes[:, 0]) * (det.boxes[:, 3] - det.boxes[:, 1])
        reasons: list[Reason] = []
        for class_id in sorted(set(det.class_ids.tolist())):  # np.unique's order, without its cost
            if class_id in self._ignored or class_id >= len(self.class_names):
                continue
            reasons += self._judge_class(det, areas, class_id, mm_per_px)
        return Verdict(Outcome.FAIL, tuple(reasons)) if reasons else PASS

    def _judge_class(self, det: Detections, areas: np.ndarray, class_id: int, mm_per_px: float | None) -> list[Reason]:
        rule = self._per_class[class_id]
        scale_mm2 = mm_per_px * mm_per_px if mm_per_px else None
        idx = np.flatnonzero((det.class_ids == class_id) & (det.scores >= rule.min_confidence) & (areas >= rule.min_area_px2))
        if rule.min_area_mm2 is not None and scale_mm2 is not None:
            idx = idx[areas[idx] * scale_mm2 >= rule.min_area_mm2]
        if self._include or self._exclude:
            idx = [i for i in idx if self._in_roi(det.boxes[i])]
        if len(idx) <= rule.max_count:
            return []
        name = self.class_names[class_id]
        text = _describe_rule(name, rule, len(idx))
        return [_reason(det, areas, i, name, text, scale_mm2) for i in idx]

    def _in_roi(self, box: np.ndarray) -> bool:
        centre = (float(box[0] + box[2]) / 2, float(box[1] + box[3]) / 2)
        if self._include and not any(cv2.pointPolygonTest(p, centre, False) >= 0 for p in self._include):
            return False
        return not any(cv2.pointPolygonTest(p, centre, False) >= 0 for p in self._exclude)


def _describe_rule(name: str, rule: ClassRuleConfig, count: int) -> str:
    limits = [f"score>={rule.min_confidence:g}"]
    if rule.min_area_px2:
        limits.append(f"area>={rule.min_area_px2:g}px2")
    if rule.min_area_mm2 is not None:
        limits.append(f"area>={rule.min_area_mm2:g}mm2")
    return f"{name}: {count} found ({', '.join(limits)}) > max_count {rule.max_count}"


def _reason(det: Detections, areas: np.ndarray, i: int, name: str, rule: str, scale_mm2: float | None) -> Reason:
    box = tuple(det.boxes[i].tolist())
    return Reason(ReasonCode.DEFECT, class_name=name, score=float(det.scores[i]), box=box,  # type: ignore[arg-type]
                  area_px2=float(areas[i]), area_mm2=float(areas[i] * scale_mm2) if scale_mm2 else None, rule=rule)
