"""`pipeline run CONFIG`: run the daemon in the foreground."""

from __future__ import annotations

import argparse

from pipeline.service.commands import positive_float, positive_int


def register(sub) -> None:
    p = sub.add_parser("run", help="run the pipeline on a config file")
    p.add_argument("config")
    p.add_argument("--frames", type=positive_int, help="stop after N frames per camera")
    p.add_argument("--duration", type=positive_float, metavar="S", help="stop after S seconds")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from pipeline.config import load_config
    from pipeline.core.logging_setup import configure_logging
    from pipeline.service.foreground import run_pipeline

    config = load_config(args.config, require_model=True)
    configure_logging(config.logging, args.log_level)  # the --log-level flag, when given, wins
    return run_pipeline(config, frames=args.frames, duration_s=args.duration, config_path=Path(args.config))
