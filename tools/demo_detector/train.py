"""The training loop: AdamW with a cosine schedule, an EMA of the weights, mixed
precision on a GPU, a progress line, and validation through the pipeline's own decoder.

Owns how a `DemoDetector` is fitted and which checkpoint is kept. Validation decodes the
model's exported-format output with `pipeline.parts.decoding.yolo_decode` and scores it with
`pipeline.service.evaluation.Tally`, so the number that picks the checkpoint is computed the way
`pipeline eval` computes it. A wall-clock budget caps the epochs (decided after the
second epoch, early in the warm-up), so a run always ends inside its time slot.
"""

from __future__ import annotations

import copy
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from demo_detector import CLASSES
from demo_detector.assign import AssignConfig, assign, detection_loss
from demo_detector.augment import augment
from demo_detector.dataset import SOURCE_SIZE, Split
from demo_detector.model import (
    DemoDetector,
    anchor_points,
    cxcywh_to_xyxy,
    decode_cxcywh,
)


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 60
    batch: int = 64
    lr: float = 3e-3
    weight_decay: float = 5e-4
    ema_decay: float = 0.999
    time_budget_s: float = 420.0
    val_every: int = 5
    min_confidence: float = 0.5  # as the demo rules: what a detection needs to fail a part
    min_area_px2: float = 0.0  # in source pixels, as the demo rules


class Progress:
    """One line per epoch; within an epoch a live bar when writing to a terminal."""

    def __init__(self, log_file=None):
        self.tty = sys.stdout.isatty()
        self.log_file = log_file

    def step(self, epoch: int, epochs: int, i: int, n: int, loss: float) -> None:
        if self.tty and (i % 10 == 0 or i == n):
            bar = "#" * (30 * i // n)
            print(f"\repoch {epoch}/{epochs} [{bar:<30}] {i}/{n} loss {loss:.3f}", end="", flush=True)

    def line(self, text: str) -> None:
        print(("\r" if self.tty else "") + text, flush=True)
        if self.log_file is not None:
            self.log_file.write(text + "\n")
            self.log_file.flush()


class Trainer:
    def __init__(self, model: DemoDetector, train: Split, val: Split, cfg: TrainConfig, device: str,
                 progress: Progress, on_best: Callable[[dict, dict], None]):
        torch.backends.cudnn.benchmark = True  # fixed input size: let cuDNN pick its fastest kernels
        model = model.to(device, memory_format=torch.channels_last)
        self.model, self.cfg, self.device, self.progress = model, cfg, device, progress
        self.ema = copy.deepcopy(self.model).eval()
        self.train_data = _to_device(train, device)
        self.val = val
        self.size = train.images.shape[-1]
        self.points, self.strides = anchor_points((self.size, self.size), device)
        decay, no_decay = _param_groups(self.model)
        self.opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                                      {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, betas=(0.9, 0.99))
        self.amp = device.startswith("cuda")
        self.step_no = 0
        self.on_best = on_best  # (state_dict on the CPU, validation report) of each new best
        self.best: tuple[float, dict] = (-1.0, {})

    # ------------------------------------------------------------------ one step
    def _loss(self, images, boxes, classes):
        x, boxes = augment(images, boxes, classes >= 0)
        x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast("cuda", torch.bfloat16, enabled=self.amp):
            raw_box, logits = self.model(x)
        pred = cxcywh_to_xyxy(decode_cxcywh(raw_box.float(), self.points, self.strides))
        targets = assign(pred.detach(), logits.detach().float().sigmoid(), boxes, classes,
                         self.points, self.strides, AssignConfig())
        return detection_loss(logits, pred, targets, self.strides)

    def _update_ema(self) -> None:
        d = self.cfg.ema_decay * (1 - math.exp(-self.step_no / 2000))  # ramp up early on
        with torch.no_grad():
            for e, m in zip(self.ema.state_dict().values(), self.model.state_dict().values()):
                e.copy_(e * d + m.detach() * (1 - d)) if e.dtype.is_floating_point else e.copy_(m)

    def _set_lr(self, total_steps: int) -> None:
        warm = min(500, total_steps // 10)
        t = self.step_no
        f = t / warm if t < warm else 0.5 * (1 + math.cos(math.pi * (t - warm) / max(1, total_steps - warm)))
        for g in self.opt.param_groups:
            g["lr"] = self.cfg.lr * max(f, 0.02)

    # ------------------------------------------------------------------ the loop
    def fit(self) -> dict:
        """Train; returns the validation report of the best checkpoint (given to on_best)."""
        images, boxes, classes = self.train_data
        n, bs = len(images), self.cfg.batch
        steps = n // bs
        epochs, epoch, started = self.cfg.epochs, 0, time.monotonic()
        while epoch < epochs:  # not a range: the time budget may shorten it after epoch 1
            epoch += 1
            t0, sums = time.monotonic(), torch.zeros(4, device=self.device)
            self.model.train()
            order = torch.randperm(n, device=self.device)
            for i in range(steps):
                self._set_lr(epochs * steps)
                idx = order[i * bs:(i + 1) * bs]
                loss, parts = self._loss(images[idx], boxes[idx], classes[idx])
                self.opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), 10.0)
                self.opt.step()
                self.step_no += 1
                self._update_ema()
                sums += torch.stack([loss.detach(), *parts])
                self.progress.step(epoch, epochs, i + 1, steps, float(loss) if self.progress.tty else 0.0)
            if epoch == 2:  # epoch 1 includes cuDNN's kernel search: time the second
                epochs = self._fit_budget(time.monotonic() - started, time.monotonic() - t0)
            m = (sums / steps).tolist()
            text = (f"epoch {epoch}/{epochs} loss {m[0]:.3f} (cls {m[1]:.3f} box {m[2]:.3f} l1 {m[3]:.3f}) "
                    f"lr {self.opt.param_groups[0]['lr']:.2e} {steps * bs / (time.monotonic() - t0):.0f} img/s "
                    f"{time.monotonic() - started:.0f}s")
            if epoch % self.cfg.val_every == 0 or epoch == epochs:
                text += " | " + self._validate(epoch)
            self.progress.line(text)
        return self.best[1]

    def _fit_budget(self, spent_s: float, epoch_s: float) -> int:
        fit = 2 + max(0, int((self.cfg.time_budget_s - spent_s) / (epoch_s * 1.08)))  # 8% for validation
        if fit < self.cfg.epochs:
            self.progress.line(f"time budget {self.cfg.time_budget_s:.0f}s at {epoch_s:.1f}s/epoch: {fit} epochs")
        return min(self.cfg.epochs, fit)

    # ------------------------------------------------------------------ validation
    def _validate(self, epoch: int) -> str:
        report = validate(self.ema, self.val, self.cfg, self.device)
        recalls = [c["recall_min_size"] for c in report["classes"].values()]
        p = report["parts"]
        score = min(recalls) + p["defective_fail_rate"] + p["good_pass_rate"]
        if score > self.best[0]:
            self.best = (score, {"epoch": epoch, **report})
            self.on_best({k: v.detach().cpu().clone() for k, v in self.ema.state_dict().items()}, self.best[1])
        per_class = " ".join(f"{n} P{c['precision']:.3f}/R{c['recall']:.3f}" for n, c in report["classes"].items())
        return f"val {per_class} | FAIL|defective {p['defective_fail_rate']:.3f} PASS|good {p['good_pass_rate']:.3f}"


@torch.no_grad()
def validate(model: DemoDetector, val: Split, cfg: TrainConfig, device: str) -> dict:
    """Per-class P/R and part-level rates on `val`, through the pipeline's decoder."""
    from pipeline.parts.decoding.yolo_decode import decode
    from pipeline.service.evaluation import Tally

    model.eval()
    scale = val.images.shape[-1] / max(SOURCE_SIZE)
    tally = Tally(CLASSES, (cfg.min_confidence,) * len(CLASSES), (cfg.min_area_px2 * scale * scale,) * len(CLASSES))
    for start in range(0, len(val), 256):
        x = torch.from_numpy(val.images[start:start + 256]).to(device).float() / 255.0
        out = model.predict(x).float().cpu().numpy()
        for i, (boxes, scores, ids) in enumerate(decode(out, len(CLASSES), 0.25, 0.45, 100)):
            k = start + i
            valid = val.classes[k] >= 0
            tally.add_detections(boxes, scores, ids, val.boxes[k][valid], val.classes[k][valid])
            areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
            fails = bool(np.any((scores >= cfg.min_confidence) & (areas >= tally.min_area_px2[0])))
            tally.parts["defective" if valid.any() else "good", "FAIL" if fails else "PASS"] += 1
    return tally.report()


def _to_device(split: Split, device: str):
    return (torch.from_numpy(split.images).to(device), torch.from_numpy(split.boxes).to(device),
            torch.from_numpy(split.classes).to(device))


def _param_groups(model: torch.nn.Module):
    decay = [p for n, p in model.named_parameters() if p.ndim > 1]
    no_decay = [p for n, p in model.named_parameters() if p.ndim <= 1]  # biases and BN: no decay
    return decay, no_decay
