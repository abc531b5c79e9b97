"""`pipeline health [--url URL]`: ask a running daemon's /healthz, for people and probes.

Prints the daemon's answer (`ok`, or why not: starting, stuck stage, camera down...)
and exits 0 when healthy, 1 otherwise, including when nothing answers. Only 0 and 1,
because Docker's HEALTHCHECK reserves every other exit code.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.request
from urllib.parse import urlsplit

from pipeline.service.commands import positive_float

DEFAULT_URL = "http://127.0.0.1:9108/healthz"


def register(sub) -> None:
    p = sub.add_parser("health", help="check a running daemon's /healthz (exit 0 healthy, 1 not)")
    p.add_argument("--url", default=DEFAULT_URL, help=f"default {DEFAULT_URL}")
    p.add_argument("--timeout", type=positive_float, default=3.0, metavar="S")
    p.set_defaults(func=health)


def health(args: argparse.Namespace) -> int:
    if urlsplit(args.url).scheme not in ("http", "https") or not urlsplit(args.url).netloc:
        print(f"unhealthy: --url {args.url!r} is not an http:// URL (e.g. {DEFAULT_URL})", file=sys.stderr)
        return 1
    try:
        with urllib.request.urlopen(args.url, timeout=args.timeout) as reply:  # noqa: S310 - operator's URL
            body = reply.read()
    except urllib.error.HTTPError as exc:  # 503: the daemon answered, with its reason
        body = exc.read()
    except (urllib.error.URLError, OSError) as exc:
        why = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        print(f"unhealthy: no answer from {args.url}: {why}", file=sys.stderr)
        return 1
    try:
        doc = json.loads(body)
    except ValueError:
        print(f"unhealthy: {args.url} did not answer with the health document", file=sys.stderr)
        return 1
    print("ok" if doc.get("healthy") else f"unhealthy: {doc.get('reason') or 'unknown'}")
    return 0 if doc.get("healthy") else 1
