#!/usr/bin/env python3
"""Train the demo defect detector and export it to ONNX (developer tool; never in CI).

Renders train/validation splits from the synthetic camera (by default 30 frames of each
of the seeds 100..599 for training, 100 frames of each of the seeds 20..29 for
validation; seeds below 20 stay held out for `pipeline eval`), trains `DemoDetector`,
keeps the checkpoint with the best validation score and exports it:

    python tools/train_demo_model.py --out .cache/demo_model            # train + export
    python tools/train_demo_model.py --export-only CKPT --out engines    # re-export a checkpoint
    python tools/train_demo_model.py --benchmark engines/demo.onnx       # CPU latency, 2 threads

Writes OUT/NAME.pt (weights + architecture), OUT/NAME.onnx, OUT/NAME.log and
OUT/NAME.json (validation report of the kept checkpoint). Uses CUDA when available;
on a CPU it works too, only slowly (use fewer seeds and frames per seed).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tools")]  # run from a checkout, installed or not

import torch

from demo_detector import CLASSES
from demo_detector.bench import measure_latency
from demo_detector.dataset import Recipe, load_or_render
from demo_detector.export import export_onnx
from demo_detector.model import DemoDetector, count_flops
from demo_detector.train import Progress, TrainConfig, Trainer


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=ROOT / ".cache" / "demo_model")
    p.add_argument("--name", default="demo")
    p.add_argument("--size", type=int, default=416, help="model input side (multiple of 32)")
    p.add_argument("--width", default="16,16,40,56,80", help="channels of the five backbone stages")
    p.add_argument("--neck", type=int, default=40)
    p.add_argument("--train-seeds", type=seed_range, default=(100, 500), metavar="FIRST:END")
    p.add_argument("--train-frames-per-seed", type=int, default=30)
    p.add_argument("--val-seeds", type=seed_range, default=(20, 10), metavar="FIRST:END")
    p.add_argument("--val-frames-per-seed", type=int, default=100)
    p.add_argument("--defect-probability", type=float, default=0.7)  # more defects to learn from
    p.add_argument("--max-defects", type=int, default=3)
    p.add_argument("--epochs", type=int, default=60)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--time-budget-s", type=float, default=360.0, help="cap on training time (epochs shrink to fit)")
    p.add_argument("--min-area-px2", type=float, default=40.0, help="the demo rules' min_area_px2 (source px)")
    p.add_argument("--cache", type=Path, default=ROOT / ".cache" / "demo_dataset")
    p.add_argument("--export-only", type=Path, metavar="CKPT", help="export CKPT to OUT/NAME.onnx and exit")
    p.add_argument("--benchmark", type=Path, metavar="ONNX", help="time ONNX on the CPU (--threads) and exit")
    p.add_argument("--threads", type=int, default=2, help="ONNX Runtime intra-op threads for --benchmark")
    return p.parse_args(argv)


def seed_range(text: str) -> tuple[int, int]:
    """"100:400" -> (100, 300): the first seed and how many."""
    first, _, end = text.partition(":")
    if not end or int(end) <= int(first):
        raise argparse.ArgumentTypeError(f"expected FIRST:END with END > FIRST, got {text!r}")
    return int(first), int(end) - int(first)


def build_model(arch: dict) -> DemoDetector:
    return DemoDetector(len(CLASSES), tuple(arch["width"]), arch["neck"])


def export_checkpoint(ckpt_path: Path, out: Path, name: str) -> Path:
    ckpt = torch.load(ckpt_path, map_location="cpu")
    model = build_model(ckpt["arch"])
    model.load_state_dict(ckpt["state_dict"])
    return export_onnx(model, out / f"{name}.onnx", ckpt["arch"]["size"], CLASSES)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.benchmark:
        print(json.dumps(measure_latency(args.benchmark, args.size, args.threads)))
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    if args.export_only:
        print(export_checkpoint(args.export_only, args.out, args.name))
        return 0
    arch = {"size": args.size, "width": [int(c) for c in args.width.split(",")], "neck": args.neck}
    model = build_model(arch)
    flops, params = count_flops(model, args.size)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    with open(args.out / f"{args.name}.log", "w") as log_file:
        progress = Progress(log_file)
        progress.line(f"{args.name}: {arch}, {params} parameters, {flops / 1e9:.3f} GFLOPs, device {device}")
        t0 = time.monotonic()
        common = (args.size, args.defect_probability, args.max_defects)
        train = load_or_render(Recipe(*args.train_seeds, args.train_frames_per_seed, *common), args.cache)
        val = load_or_render(Recipe(*args.val_seeds, args.val_frames_per_seed, *common), args.cache)
        progress.line(f"data: {len(train)} train (seeds {args.train_seeds}), {len(val)} val "
                      f"(seeds {args.val_seeds}) in {time.monotonic() - t0:.1f}s")
        cfg = TrainConfig(epochs=args.epochs, batch=args.batch, lr=args.lr, time_budget_s=args.time_budget_s,
                          min_area_px2=args.min_area_px2)
        ckpt = args.out / f"{args.name}.pt"

        def keep(state: dict, report: dict) -> None:  # saved at once: a cut-off run still leaves its best
            torch.save({"arch": arch, "state_dict": state, "args": {k: str(v) for k, v in vars(args).items()}}, ckpt)
            summary = {"params": params, "flops": flops, **report}
            (args.out / f"{args.name}.json").write_text(json.dumps(summary, indent=1))

        report = Trainer(model, train, val, cfg, device, progress, on_best=keep).fit()
        progress.line(f"kept the checkpoint of epoch {report['epoch']}")
    print(export_checkpoint(ckpt, args.out, args.name))
    return 0


if __name__ == "__main__":
    sys.exit(main())
