"""`pipeline subscribe ENDPOINT`: print verdicts as they arrive, flag sequence gaps."""

from __future__ import annotations

import argparse

from pipeline.commands import positive_int


def register(sub) -> None:
    p = sub.add_parser("subscribe", help="print verdicts published at ENDPOINT as they arrive")
    p.add_argument("endpoint", help="e.g. tcp://127.0.0.1:5555")
    p.add_argument("--topic", default="", help="topic prefix to subscribe to (default: all)")
    p.add_argument("--count", type=positive_int, help="exit after N verdicts")
    p.add_argument("--timeout", type=float, metavar="S", help="exit 1 after S seconds of silence")
    p.add_argument("--json", action="store_true", help="print the raw JSON payloads")
    p.set_defaults(func=subscribe)


def subscribe(args: argparse.Namespace) -> int:
    from pipeline.subscriber import subscribe_main

    return subscribe_main(args.endpoint, topic=args.topic, count=args.count, timeout_s=args.timeout, json_lines=args.json)
