"""Decision rules against hand-computed cases."""

import numpy as np

from pipeline.config.models import ClassRuleConfig, RoiConfig, RulesConfig
from pipeline.core.messages import Detections, Outcome, ReasonCode
from pipeline.parts.rules import RuleBook

NAMES = ("scratch", "spot", "crack")


def det(*rows):
    """rows of (x1, y1, x2, y2, score, class_id)"""
    a = np.array(rows, np.float64).reshape(-1, 6)
    return Detections(a[:, :4].astype(np.float32), a[:, 4].astype(np.float32), a[:, 5].astype(np.int64))


def book(**kw):
    return RuleBook(RulesConfig(**kw), NAMES)


def test_no_detections_pass():
    assert book().judge(Detections.empty(), None).outcome is Outcome.PASS


def test_confident_detection_fails_with_a_reason_naming_the_rule():
    v = book().judge(det((10, 10, 30, 20, 0.9, 0)), None)
    assert v.outcome is Outcome.FAIL
    (r,) = v.reasons
    assert r.code is ReasonCode.DEFECT and r.class_name == "scratch"
    assert r.area_px2 == 200.0 and r.box == (10.0, 10.0, 30.0, 20.0)
    assert "max_count 0" in r.rule


def test_below_min_confidence_passes():
    assert book().judge(det((10, 10, 30, 20, 0.4, 0)), None).outcome is Outcome.PASS


def test_min_area_px2_per_class():
    rules = {"spot": ClassRuleConfig(min_area_px2=300)}
    b = book(classes=rules)
    assert b.judge(det((0, 0, 10, 20, 0.9, 1)), None).outcome is Outcome.PASS  # 200 px2
    assert b.judge(det((0, 0, 20, 20, 0.9, 1)), None).outcome is Outcome.FAIL  # 400 px2


def test_min_area_mm2_uses_the_camera_scale():
    b = book(default=ClassRuleConfig(min_area_mm2=1.0))
    box = det((0, 0, 10, 10, 0.9, 2))  # 100 px2
    assert b.judge(box, 0.05).outcome is Outcome.PASS  # 0.25 mm2
    v = b.judge(box, 0.2)  # 4 mm2
    assert v.outcome is Outcome.FAIL and abs(v.reasons[0].area_mm2 - 4.0) < 1e-6


def test_max_count_allows_some():
    b = book(classes={"spot": ClassRuleConfig(max_count=1)})
    assert b.judge(det((0, 0, 5, 5, 0.9, 1)), None).outcome is Outcome.PASS
    v = b.judge(det((0, 0, 5, 5, 0.9, 1), (20, 20, 25, 25, 0.8, 1)), None)
    assert v.outcome is Outcome.FAIL and len(v.reasons) == 2


def test_roi_include_and_exclude_use_the_box_centre():
    square = ((0, 0), (100, 0), (100, 100), (0, 100))
    b = book(roi=RoiConfig(include=(square,), exclude=(((40, 40), (60, 40), (60, 60), (40, 60)),)))
    assert b.judge(det((200, 200, 210, 210, 0.9, 0)), None).outcome is Outcome.PASS  # outside include
    assert b.judge(det((45, 45, 55, 55, 0.9, 0)), None).outcome is Outcome.PASS  # in exclude
    assert b.judge(det((5, 5, 15, 15, 0.9, 0)), None).outcome is Outcome.FAIL


def test_ignored_classes_and_unknown_rule_classes():
    b = book(ignore_classes=("crack",), classes={"scrach": ClassRuleConfig()})
    assert b.judge(det((0, 0, 9, 9, 0.99, 2)), None).outcome is Outcome.PASS
    assert b.unknown_rule_classes() == ["scrach"]
