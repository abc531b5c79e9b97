"""`pipeline curve-keys DIR NAME`: write a ZeroMQ CURVE key pair for the publisher or a gateway."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser("curve-keys", help="write a CURVE key pair: NAME.key (public) and NAME.key_secret (0600)")
    p.add_argument("directory", type=Path)
    p.add_argument("name", help="e.g. server, or the gateway's name")
    p.set_defaults(func=curve_keys)


def curve_keys(args: argparse.Namespace) -> int:
    from pipeline.publishing.curve import write_key_pair

    try:
        public, secret = write_key_pair(args.directory, args.name)
    except FileExistsError as exc:
        print(f"error: {exc.filename} already exists; not overwriting a key", file=sys.stderr)
        return 2
    print(f"public key (share it): {public}\nsecret key (keep it, mode 0600): {secret}")
    return 0
