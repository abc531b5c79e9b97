"""`pipeline curve-keys DIR NAME`: write a ZeroMQ CURVE key pair for the publisher or a gateway."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

# The name becomes two file names inside DIR: no separators, no `..`, nothing hidden.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def key_name(text: str) -> str:
    if not _NAME.fullmatch(text) or ".." in text:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a key name: use letters, digits, '_', '-', '.' (no path separators, no '..'); "
            "the folder is the DIR argument")
    return text


def register(sub) -> None:
    p = sub.add_parser("curve-keys", help="write a CURVE key pair: NAME.key (public) and NAME.key_secret (0600)")
    p.add_argument("directory", type=Path)
    p.add_argument("name", type=key_name, help="e.g. server, or the gateway's name")
    p.set_defaults(func=curve_keys)


def curve_keys(args: argparse.Namespace) -> int:
    from pipeline.parts.publishing.curve import write_key_pair

    try:
        public, secret = write_key_pair(args.directory, args.name)
    except FileExistsError as exc:
        print(f"error: {exc.filename} already exists; not overwriting a key", file=sys.stderr)
        return 2
    print(f"public key (share it): {public}\nsecret key (keep it, mode 0600): {secret}")
    return 0
