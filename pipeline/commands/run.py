"""`pipeline run CONFIG`: run the daemon in the foreground."""

from __future__ import annotations

import argparse

from pipeline.commands import positive_int


def register(sub) -> None:
    p = sub.add_parser("run", help="run the pipeline on a config file")
    p.add_argument("config")
    p.add_argument("--frames", type=positive_int, help="stop after N frames per camera")
    p.add_argument("--duration", type=float, metavar="S", help="stop after S seconds")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pipeline.config import load_config
    from pipeline.runner import run_pipeline

    return run_pipeline(load_config(args.config), frames=args.frames, duration_s=args.duration)
