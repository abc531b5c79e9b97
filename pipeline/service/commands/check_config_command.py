"""`pipeline check-config CONFIG`: validate the YAML (and open the model) and exit."""

from __future__ import annotations

import argparse


def register(sub) -> None:
    p = sub.add_parser("check-config", help="validate a config file (and its model) and exit")
    p.add_argument("config")
    p.add_argument("--no-model", action="store_true", help="only validate the YAML, do not open the model")
    p.set_defaults(func=check)


def check(args: argparse.Namespace) -> int:
    from pipeline.config import load_config
    from pipeline.service.daemon.preflight import preflight

    config = load_config(args.config, require_model=not args.no_model)
    preflight(config)  # exactly what `pipeline run` refuses before it starts
    if not args.no_model:
        from pipeline.composition.assembly import check_rules, open_backend

        backend = open_backend(config.model)
        try:
            check_rules(config, backend.class_names)
        finally:
            backend.close()
    cams = ", ".join(f"{c.id} ({c.source.kind} {c.width}x{c.height}@{c.fps:g})" for c in config.cameras)
    print(f"{args.config}: OK - cameras: {cams}; model: {config.model.location} ({config.model.backend.value}); "
          f"publisher: {config.publisher.endpoint}")
    return 0
