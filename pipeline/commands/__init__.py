"""Subcommands of the `pipeline` CLI, one module each, each with `register(subparsers)`.
Modules import their heavy machinery inside the command function, so `--help` is fast."""

import argparse


def positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value
