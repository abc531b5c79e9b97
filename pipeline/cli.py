"""The `pipeline` command: argument parsing and exit codes, nothing else.

Exit codes: 0 success, 1 runtime failure (a stage crashed), 2 unusable input (config,
model, camera, endpoint), with a one-paragraph message on stderr and no traceback.
Subcommands import their machinery lazily so `pipeline check-config` stays fast.
"""

from __future__ import annotations

import argparse
import logging
import sys

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    _setup_logging(args.log_level)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        return EXIT_OK
    except _user_errors() as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT


def _user_errors() -> tuple[type[BaseException], ...]:
    from pipeline.app import StartupError
    from pipeline.config import ConfigError

    return (ConfigError, StartupError)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pipeline", description="Industrial inspection streaming pipeline.")
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    sub = p.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the pipeline on a config file")
    run.add_argument("config")
    run.add_argument("--frames", type=_positive_int, help="stop after N frames per camera")
    run.add_argument("--duration", type=float, metavar="S", help="stop after S seconds")
    run.set_defaults(func=_cmd_run)

    check = sub.add_parser("check-config", help="validate a config file (and its model) and exit")
    check.add_argument("config")
    check.add_argument("--no-model", action="store_true", help="only validate the YAML, do not open the model")
    check.set_defaults(func=_cmd_check)

    subscribe = sub.add_parser("subscribe", help="print verdicts published at ENDPOINT as they arrive")
    subscribe.add_argument("endpoint", help="e.g. tcp://127.0.0.1:5555")
    subscribe.add_argument("--topic", default="", help="topic prefix to subscribe to (default: all)")
    subscribe.add_argument("--count", type=_positive_int, help="exit after N verdicts")
    subscribe.add_argument("--timeout", type=float, metavar="S", help="exit 1 after S seconds of silence")
    subscribe.add_argument("--json", action="store_true", help="print the raw JSON payloads")
    subscribe.set_defaults(func=_cmd_subscribe)
    return p


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def _setup_logging(level: str) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)


def _cmd_run(args: argparse.Namespace) -> int:
    from pipeline.config import load_config
    from pipeline.runner import run_pipeline

    return run_pipeline(load_config(args.config), frames=args.frames, duration_s=args.duration)


def _cmd_check(args: argparse.Namespace) -> int:
    from pipeline.config import load_config

    config = load_config(args.config)
    if not args.no_model:
        from pipeline.assembly import check_rules, open_backend

        backend = open_backend(config.model)
        try:
            check_rules(config, backend.class_names)
        finally:
            backend.close()
    cams = ", ".join(f"{c.id} ({c.source.kind} {c.width}x{c.height}@{c.fps:g})" for c in config.cameras)
    print(f"{args.config}: OK - cameras: {cams}; model: {config.model.path} ({config.model.backend.value}); "
          f"publisher: {config.publisher.endpoint}")
    return EXIT_OK


def _cmd_subscribe(args: argparse.Namespace) -> int:
    from pipeline.subscriber import subscribe_main

    return subscribe_main(args.endpoint, topic=args.topic, count=args.count, timeout_s=args.timeout, json_lines=args.json)


if __name__ == "__main__":
    sys.exit(main())
