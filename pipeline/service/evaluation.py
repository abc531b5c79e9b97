"""Measures the pipeline against the ground truth of its synthetic cameras.

Owns the quality numbers of the project: detections matched to the truth per class
(precision and recall at IoU 0.5, greedy by score) and verdicts compared with whether a
part really was defective. What crosses the boundary: settled `Job`s (from a verdict
sink, or handed in by a training script's own loop) go in; a plain dict comes out, the
one `pipeline eval --json` writes.

`evaluate` runs the REAL pipeline through the run driver (real threads, queues, model
and PUB socket) with a `Scorer` as one more verdict sink, but with overrides that
make it a measurement of the model and the rules rather than of timing:
  * synthetic sources render flat out (`realtime: false`), so evaluation is fast;
  * every queue blocks (with a long timeout) instead of shedding, so no frame is lost
    to overload: a shed frame would be NOT_INSPECTED and say nothing about the model;
  * the late policy is `report` and the budget the longest allowed, so a frame that
    waited in a full queue keeps the verdict its detections earned instead of becoming
    FAIL (`deadline`) or being skipped as expired. Latency is what `pipeline run`
    measures, not `eval`;
  * side effects stay out of the way of a daemon that may be running beside it: the PUB
    socket binds a free loopback port and waits for no subscriber, the failed-part
    archive is off, and cameras take no part-id triggers (frames come free-running).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable

from pipeline.config.models import (
    LatePolicy,
    Overflow,
    PipelineConfig,
    QueueConfig,
    RulesConfig,
)
from pipeline.core.messages import Job, Outcome, PublishedVerdict
from pipeline.service.truth_matching import match

log = logging.getLogger(__name__)

EVAL_BLOCK_TIMEOUT_MS = 60_000  # "block" means block: only a hung stage would reach this
EVAL_BUDGET_MS = 60_000.0  # the schema's maximum: in eval no verdict is late
EVAL_DRAIN_S = 60.0  # after the last capture: the queued frames' verdicts (a hung stage is routed around)


@dataclass
class ClassTally:
    tp: int = 0
    fp: int = 0
    support: int = 0  # true defects of this class
    support_min: int = 0  # of those, at or above the rules' min_area_px2
    found_min: int = 0

    def as_dict(self) -> dict:
        found = self.tp  # one true positive per found truth
        return {"precision": _ratio(self.tp, self.tp + self.fp), "recall": _ratio(found, self.support),
                "support": self.support, "recall_min_size": _ratio(self.found_min, self.support_min),
                "support_min_size": self.support_min, "false_positives": self.fp}


@dataclass
class Tally:
    """Running totals over frames. A detection counts when its score reaches the class
    rule's min_confidence (the detections that can fail a part)."""

    class_names: tuple[str, ...]
    min_confidence: tuple[float, ...]
    min_area_px2: tuple[float, ...]
    classes: list[ClassTally] = field(default_factory=list)
    parts: Counter = field(default_factory=Counter)  # (truth, outcome) -> frames

    @classmethod
    def for_rules(cls, rules: RulesConfig, class_names: tuple[str, ...]) -> Tally:
        per_class = [rules.classes.get(n, rules.default) for n in class_names]
        return cls(tuple(class_names), tuple(r.min_confidence for r in per_class),
                   tuple(r.min_area_px2 for r in per_class))

    def __post_init__(self) -> None:
        self.classes = [ClassTally() for _ in self.class_names]

    def add_detections(self, boxes, scores, class_ids, gt_boxes, gt_class_ids) -> None:
        gt_areas = (gt_boxes[:, 2] - gt_boxes[:, 0]) * (gt_boxes[:, 3] - gt_boxes[:, 1])
        for c, tally in enumerate(self.classes):
            keep = (class_ids == c) & (scores >= self.min_confidence[c])
            truth = gt_class_ids == c
            tp, found = match(boxes[keep], scores[keep], gt_boxes[truth])
            big = gt_areas[truth] >= self.min_area_px2[c]
            tally.tp += int(tp.sum())
            tally.fp += int((~tp).sum())
            tally.support += int(truth.sum())
            tally.support_min += int(big.sum())
            tally.found_min += int(found[big].sum())

    def add_job(self, job: Job) -> None:
        """One published verdict of a synthetic camera (its frame carries the truth)."""
        truth = job.frame.truth
        if truth is None:
            raise ValueError(f"camera {job.frame.camera_id} frame {job.frame.frame_id} has no ground truth")
        self.parts["defective" if truth.defective else "good", job.verdict.outcome.value] += 1
        det = job.detections
        if det is not None and job.verdict.outcome in (Outcome.PASS, Outcome.FAIL):
            self.add_detections(det.boxes, det.scores, det.class_ids, truth.boxes, truth.class_ids)

    def report(self) -> dict:
        parts = {}
        for kind in ("defective", "good"):
            parts[kind] = sum(n for (k, _), n in self.parts.items() if k == kind)
            parts[f"{kind}_outcomes"] = {o.value: self.parts[kind, o.value] for o in Outcome}
        parts["defective_fail_rate"] = _ratio(self.parts["defective", "FAIL"], parts["defective"])
        parts["good_pass_rate"] = _ratio(self.parts["good", "PASS"], parts["good"])
        return {"classes": {n: t.as_dict() for n, t in zip(self.class_names, self.classes)}, "parts": parts}


def _ratio(a: int, b: int) -> float:
    return a / b if b else 0.0


# --------------------------------------------------------------------------- running


class Scorer:
    """The eval's `VerdictSink`: every published verdict into the tally, then to `on_job`.

    Runs on the publish stage's thread after the send, so it must be quick; an error in
    scoring is counted and logged here, and the next verdict is scored again.
    """

    def __init__(self, tally: Tally, on_job: Callable[[Job], None] | None = None):
        self.tally = tally
        self._on_job = on_job
        self.failures = 0

    def verdict_published(self, published: PublishedVerdict) -> None:
        job = published.job
        try:
            self.tally.add_job(job)
            if self._on_job is not None:
                self._on_job(job)
        except Exception:  # measuring must never cost a part its verdict
            self.failures += 1
            log.exception("evaluation failed on camera %s frame %d", job.frame.camera_id, job.frame.frame_id)


def eval_config(config: PipelineConfig, seed: int | None = None) -> PipelineConfig:
    """The config as `evaluate` runs it (see the module docstring); `seed` S gives camera
    i the seed S + i, so two cameras never render the same frames."""
    cameras = []
    for i, cam in enumerate(config.cameras):
        if cam.source.kind != "synthetic":
            raise ValueError(f"camera {cam.id} has a {cam.source.kind!r} source: eval needs synthetic "
                             "cameras, whose frames carry their ground truth")
        changes = {"realtime": False} if seed is None else {"realtime": False, "seed": seed + i}
        source = cam.source.model_copy(update=changes)
        cameras.append(cam.model_copy(update={"source": source, "trigger_endpoint": None}))
    blocking = QueueConfig(overflow=Overflow.BLOCK, block_timeout_ms=EVAL_BLOCK_TIMEOUT_MS)
    queues = config.queues.model_copy(update={
        # a config section by its name, not a capability probe
        name: blocking.model_copy(update={"size": getattr(config.queues, name).size})
        for name in ("preprocess", "infer", "decide")})
    publisher = config.publisher.model_copy(update={"endpoint": "tcp://127.0.0.1:*", "await_subscriber_ms": 0})
    archive = config.archive.model_copy(update={"enabled": False})
    return config.model_copy(update={"cameras": tuple(cameras), "queues": queues, "late_policy": LatePolicy.REPORT,
                                     "budget_ms": EVAL_BUDGET_MS, "publisher": publisher, "archive": archive})


def evaluate(config: PipelineConfig, frames: int, seed: int | None = None, on_job=None) -> dict:
    """Run the pipeline for `frames` frames per camera and measure it; `on_job(job,
    class_names)` sees every verdict too (e.g. to write annotated images)."""
    from pipeline.composition.app import StartupError
    from pipeline.composition.driver import RunDriver, Substitutions

    try:
        config = eval_config(config, seed)
    except ValueError as exc:
        raise StartupError(str(exc)) from None
    # an annotating observer reads the image after publish
    driver = RunDriver(config, frames=frames, substitutions=Substitutions(sinks_read_images=on_job is not None))
    driver.open()
    names = driver.class_names
    scorer = Scorer(Tally.for_rules(config.rules, names), (lambda job: on_job(job, names)) if on_job else None)
    driver.add_sink(scorer)
    started = time.monotonic()
    try:
        driver.start()
        driver.run()  # until every camera's frames are captured, or a crash
    finally:
        # the frames in flight drain (every queue blocks, so few are left); a crashed
        # stage is routed around and its frames are published as ERROR
        code = driver.stop(EVAL_DRAIN_S)
    report = scorer.tally.report()
    report["run"] = {"frames_per_camera": frames, "cameras": [c.id for c in config.cameras],
                     "seeds": [c.source.seed for c in config.cameras], "exit_code": code,
                     "tap_failures": scorer.failures, "wall_s": round(time.monotonic() - started, 2)}
    return report


def format_report(report: dict) -> str:
    """The report as the two tables `pipeline eval` prints."""
    rows = [f"{'class':<10}{'precision':>10}{'recall':>8}{'support':>9}{'recall>=min':>13}{'support>=min':>14}"]
    for name, c in report["classes"].items():
        rows.append(f"{name:<10}{c['precision']:>10.3f}{c['recall']:>8.3f}{c['support']:>9d}"
                    f"{c['recall_min_size']:>13.3f}{c['support_min_size']:>14d}")
    p = report["parts"]
    rows += ["", f"{'truth':<11}{'parts':>6}" + "".join(f"{o.value:>15}" for o in Outcome) + f"{'rate':>8}"]
    for kind, rate, what in (("defective", p["defective_fail_rate"], "FAIL"), ("good", p["good_pass_rate"], "PASS")):
        counts = "".join(f"{p[kind + '_outcomes'][o.value]:>15d}" for o in Outcome)
        rows.append(f"{kind:<11}{p[kind]:>6d}{counts}{rate:>8.3f}  ({what} rate)")
    return "\n".join(rows)
