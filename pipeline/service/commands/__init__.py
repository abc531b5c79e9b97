"""Subcommands of the `pipeline` CLI, one module each, each with `register(subparsers)`.
Modules import their heavy machinery inside the command function, so `--help` is fast.
This module holds what several subcommands share: the exit codes, argument types, the error and
progress lines on stderr, the version line."""

import argparse
import math
import sys

# 0 success, 1 runtime failure (a stage crashed, a quality gate refused), 2 unusable input
# with a message on stderr and no traceback (the `pipeline` command's docstring).
EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2


def bad_input(message: str, prefix: str = "error") -> int:
    """`prefix: message` on stderr, and the exit code that says the input was unusable."""
    print(f"{prefix}: {message}", file=sys.stderr)
    return EXIT_BAD_INPUT


def progress(line: str) -> None:
    """A progress line of a long command, on stderr: stdout stays the command's result."""
    print(line, file=sys.stderr, flush=True)


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def positive_float(text: str) -> float:
    """A finite number > 0: durations, intervals, rates (0, negatives, nan and inf refused)."""
    value = _finite_float(text, "a positive number")
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text}")
    return value


def non_negative_float(text: str) -> float:
    """A finite number >= 0 (warm-up times)."""
    value = _finite_float(text, "a finite number >= 0")
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text}")
    return value


def _finite_float(text: str, expected: str) -> float:
    """`text` as a finite float, or the argparse error that says what was `expected`."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text}")
    return value


def version_text() -> str:
    """This package's version and the versions that decide what runs (no imports: fast)."""
    from importlib import metadata

    def installed(name: str) -> str | None:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return None

    own = installed("inspection-pipeline") or "(not installed)"
    ort = [f"{n} {v}" for n in ("onnxruntime-gpu", "onnxruntime") if (v := installed(n))]
    return f"inspection-pipeline {own} (Python {sys.version.split()[0]}; {', '.join(ort) or 'no onnxruntime'})"
