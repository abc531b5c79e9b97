"""The accuracy gate: a converted model may replace FP32 only if it loses little.

Owns measuring a model on a validation set and comparing it with the FP32 original:
mAP@0.5 (all-point interpolated AP per class, averaged over classes with truth) and
part-level verdict agreement (the fraction of frames whose PASS/FAIL under the rules
equals FP32's). The validation set is either frames rendered by the synthetic camera,
with their ground truth, or a folder of images without labels; then FP32's own
detections serve as the truth, so mAP measures agreement with FP32.
What crosses the boundary: model paths and a `ValidationSet` in, a `GateResult` out.
Models run on ONNX Runtime (CPU here, or the CUDA provider where there is one).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.config.model import model_config
from pipeline.config.models import RulesConfig
from pipeline.core.messages import Detections
from pipeline.parts.backends.onnxruntime_backend import OnnxRuntimeBackend
from pipeline.parts.decoding.yolo_decode import decode, to_detections
from pipeline.parts.preprocessing.letterbox import Letterboxer
from pipeline.parts.rules import RuleBook
from pipeline.parts.sources.synthetic import SyntheticSource
from pipeline.service.convert.images import image_files, load_image
from pipeline.service.truth_matching import match


@dataclass(frozen=True)
class ValidationSet:
    images: list[np.ndarray]
    truths: list[Detections] | None  # None: use FP32's detections as the truth

    @classmethod
    def synthetic(cls, frames: int, seed: int = 4242, width: int = 640, height: int = 480) -> ValidationSet:
        source = SyntheticSource(width, height, seed=seed, defect_probability=0.5, realtime=False)
        images, truths = [], []
        for k in range(frames):
            frame = source.render(k)
            images.append(frame.image)
            t = frame.truth
            truths.append(Detections(t.boxes, np.ones(len(t.boxes), np.float32), t.class_ids))
        return cls(images, truths)

    @classmethod
    def folder(cls, folder: Path, limit: int | None = None) -> ValidationSet:
        return cls([load_image(p) for p in image_files(folder, limit)], None)


@dataclass(frozen=True)
class GateResult:
    map50_fp32: float
    map50_converted: float
    verdict_agreement: float
    frames: int
    max_map_drop: float
    min_verdict_agreement: float

    @property
    def map_drop(self) -> float:
        return self.map50_fp32 - self.map50_converted

    @property
    def passed(self) -> bool:
        return self.map_drop <= self.max_map_drop and self.verdict_agreement >= self.min_verdict_agreement

    def describe(self) -> str:
        return (f"mAP@0.5 {self.map50_converted:.4f} vs FP32 {self.map50_fp32:.4f} (drop {self.map_drop:+.4f}, "
                f"allowed {self.max_map_drop}); verdict agreement {self.verdict_agreement:.4f} "
                f"(required {self.min_verdict_agreement}) on {self.frames} frames")


def detect(model: Path, images: list[np.ndarray], input_size: tuple[int, int], backend_name: str,
           confidence: float = 0.25) -> tuple[list[Detections], tuple[str, ...]]:
    """The model's detections on every image (in source pixels), and its class names."""
    # max_candidates None: no candidate head, the raw tensor is decoded below in full.
    backend = OnnxRuntimeBackend.from_config(model_config(path=model, input_size=input_size, backend=backend_name,
                                                          threads=0, max_candidates=None))
    try:
        letterbox = Letterboxer(input_size)
        tensor = np.empty((1, 3, input_size[1], input_size[0]), np.float32)
        out = []
        for image in images:
            geometry = letterbox(image, tensor[0])
            raw = backend.infer(tensor.astype(backend.input_dtype, copy=False))
            out.append(to_detections(decode(raw, len(backend.class_names), confidence, 0.45, 100)[0], geometry))
        return out, backend.class_names
    finally:
        backend.close()


def average_precision(preds: list[Detections], truths: list[Detections], num_classes: int) -> float:
    """mAP@0.5 over the classes that have truth (all-point interpolation)."""
    aps = []
    for c in range(num_classes):
        scores, hits, total = [], [], 0
        for p, t in zip(preds, truths):
            pm, tm = p.class_ids == c, t.class_ids == c
            tp, _ = match(p.boxes[pm], p.scores[pm], t.boxes[tm])
            scores.extend(p.scores[pm].tolist())
            hits.extend(tp.tolist())
            total += int(tm.sum())
        if total:
            aps.append(_ap(np.asarray(scores), np.asarray(hits, bool), total))
    return float(np.mean(aps)) if aps else 0.0


def _ap(scores: np.ndarray, hits: np.ndarray, total: int) -> float:
    order = np.argsort(-scores, kind="stable")
    tp = np.cumsum(hits[order])
    recall = np.concatenate([[0.0], tp / total])
    precision = np.concatenate([[1.0], tp / np.arange(1, len(tp) + 1)])
    precision = np.maximum.accumulate(precision[::-1])[::-1]  # the precision envelope
    return float(np.sum(np.diff(recall) * precision[1:]))


def verdicts(dets: list[Detections], rules: RuleBook) -> list[str]:
    return [rules.judge(d, None).outcome.value for d in dets]


def run_gate(fp32: Path, converted: Path, data: ValidationSet, input_size: tuple[int, int],
             max_map_drop: float, min_verdict_agreement: float, rules: RulesConfig | None = None,
             backend: str = "onnxruntime") -> GateResult:
    reference, names = detect(fp32, data.images, input_size, backend)
    candidate, _ = detect(converted, data.images, input_size, backend)
    truths = data.truths if data.truths is not None else [_as_truth(d) for d in reference]
    book = RuleBook(rules or RulesConfig(), names)
    ref_v, cand_v = verdicts(reference, book), verdicts(candidate, book)
    agreement = sum(a == b for a, b in zip(ref_v, cand_v)) / max(1, len(ref_v))
    return GateResult(average_precision(reference, truths, len(names)),
                      average_precision(candidate, truths, len(names)), agreement, len(data.images),
                      max_map_drop, min_verdict_agreement)


def _as_truth(d: Detections) -> Detections:
    keep = d.scores >= 0.5  # FP32's confident detections stand in for labels
    return Detections(d.boxes[keep], d.scores[keep], d.class_ids[keep])
