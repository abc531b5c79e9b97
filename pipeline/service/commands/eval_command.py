"""`pipeline eval CONFIG --frames N`: run the real pipeline on its synthetic cameras and
measure detections and verdicts against their ground truth (see `pipeline.service.evaluation`)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from pipeline.service.commands import positive_int

PASS_SAMPLES = 5  # annotated PASS images per camera (every FAIL and every miss is written)


def register(sub) -> None:
    p = sub.add_parser("eval", help="measure the model and rules on synthetic cameras against their ground truth")
    p.add_argument("config")
    p.add_argument("--frames", type=positive_int, default=300, help="frames per camera (default 300)")
    p.add_argument("--seed", type=int, help="seed S for the synthetic cameras (camera i gets S + i)")
    p.add_argument("--json", type=Path, metavar="FILE", help="also write the report as JSON")
    p.add_argument("--annotate", type=Path, metavar="DIR", help="write annotated images (all FAIL, a few PASS)")
    p.set_defaults(func=run_eval)


def run_eval(args: argparse.Namespace) -> int:
    from pipeline.config import load_config
    from pipeline.service.evaluation import evaluate, format_report

    config = load_config(args.config, require_model=True)
    on_job = AnnotatedWriter(args.annotate) if args.annotate else None
    report = evaluate(config, args.frames, seed=args.seed, on_job=on_job)
    run = report["run"]
    print(f"{args.config}: {args.frames} frames x {len(run['cameras'])} camera(s), seeds {run['seeds']}, "
          f"{run['wall_s']} s\n")
    print(format_report(report))
    if on_job is not None:
        print(f"\n{on_job.written} annotated image(s) in {args.annotate}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


class AnnotatedWriter:
    """Writes every verdict but PASS, every defective part that passed (a miss), and the
    first few good PASS of each camera as `<camera>_<frame>_<OUTCOME>[-missed|-false-alarm].png`."""

    def __init__(self, folder: Path):
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.passes: dict[str, int] = {}
        self.written = 0

    def __call__(self, job, class_names) -> None:
        import cv2

        from pipeline.parts.annotate import annotate

        outcome = job.verdict.outcome.value
        defective = job.frame.truth is not None and job.frame.truth.defective
        if outcome == "PASS" and not defective:
            seen = self.passes.get(job.frame.camera_id, 0)
            self.passes[job.frame.camera_id] = seen + 1
            if seen >= PASS_SAMPLES:
                return
        # the tag says when the verdict disagrees with the truth, so mistakes are easy to find
        tag = {("PASS", True): "PASS-missed", ("FAIL", False): "FAIL-false-alarm"}.get((outcome, defective), outcome)
        name = f"{job.frame.camera_id}_{job.frame.frame_id:06d}_{tag}.png"
        cv2.imwrite(str(self.folder / name), annotate(None, job, class_names))  # PNG: lossless thin lines
        self.written += 1
