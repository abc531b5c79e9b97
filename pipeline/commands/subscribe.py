"""`pipeline subscribe ENDPOINT`: print verdicts as they arrive, flag sequence gaps."""

from __future__ import annotations

import argparse
import sys

from pipeline.commands import positive_int


def register(sub) -> None:
    p = sub.add_parser("subscribe", help="print verdicts published at ENDPOINT as they arrive")
    p.add_argument("endpoint", help="e.g. tcp://127.0.0.1:5555")
    p.add_argument("--topic", default="", help="topic prefix to subscribe to (default: all)")
    p.add_argument("--count", type=positive_int, help="exit after N verdicts")
    p.add_argument("--timeout", type=float, metavar="S", help="exit 1 after S seconds of silence")
    p.add_argument("--json", action="store_true", help="print the raw JSON payloads")
    p.add_argument("--curve-server-key", metavar="FILE",
                   help="the publisher's public key file (its publisher.curve is on)")
    p.add_argument("--curve-client-keys", metavar="FILE",
                   help="this subscriber's certificate (public + secret key, mode 0600)")
    p.set_defaults(func=subscribe)


def subscribe(args: argparse.Namespace) -> int:
    from pipeline.subscriber import subscribe_main

    if (args.curve_server_key is None) != (args.curve_client_keys is None):
        print("error: --curve-server-key and --curve-client-keys go together", file=sys.stderr)
        return 2
    curve = (args.curve_server_key, args.curve_client_keys) if args.curve_server_key else None
    return subscribe_main(args.endpoint, topic=args.topic, count=args.count, timeout_s=args.timeout,
                          json_lines=args.json, curve=curve)
