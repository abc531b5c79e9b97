"""The `pipeline` command: argument parsing and exit codes, nothing else.

Each subcommand lives in its own module under `pipeline.service.commands` and exposes
`register(subparsers)`; every module there is a subcommand. Global options
(`--log-level`) are accepted before or after the subcommand. Exit codes: 0 success,
1 runtime failure (a stage crashed, a quality gate missed), 2 unusable input (config,
model, camera, endpoint) with a message on stderr and no traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys

import pipeline.service.commands
from pipeline.service.commands import EXIT_BAD_INPUT, EXIT_OK, version_text

LOG_LEVELS = ["DEBUG", "INFO", "WARNING", "ERROR"]


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _setup_logging(args.log_level or "INFO")
    try:
        return args.func(args)
    except KeyboardInterrupt:
        return EXIT_OK
    except _user_errors() as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT


def _user_errors() -> tuple[type[BaseException], ...]:
    from pipeline.composition.app import StartupError
    from pipeline.config import ConfigError

    return (ConfigError, StartupError)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pipeline", description="Industrial inspection streaming pipeline.")
    p.add_argument("--version", action="version", version=version_text())
    _add_global_options(p, default=None)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(pipeline.service.commands.__path__), key=lambda m: m.name):
        importlib.import_module(f"pipeline.service.commands.{info.name}").register(sub)
    for command in sub.choices.values():  # `pipeline run X --log-level DEBUG` as well as before `run`
        _add_global_options(command, default=argparse.SUPPRESS)
    return p


def _add_global_options(parser: argparse.ArgumentParser, default: object) -> None:
    # SUPPRESS on the subcommand: when not given there, the value parsed before it stays.
    parser.add_argument("--log-level", choices=LOG_LEVELS, default=default,
                        help="default INFO, or the config's logging.level for `run`")


def _setup_logging(level: str) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
