"""`pipeline subscribe ENDPOINT`: print verdicts as they arrive, flag sequence gaps."""

from __future__ import annotations

import argparse
import sys

from pipeline.service.commands import positive_float, positive_int


def register(sub) -> None:
    p = sub.add_parser("subscribe", help="print verdicts published at ENDPOINT as they arrive")
    p.add_argument("endpoint", help="e.g. tcp://127.0.0.1:5555")
    p.add_argument("--topic", default="", help="topic prefix to subscribe to (default: all)")
    p.add_argument("--count", type=positive_int, help="exit after N verdicts")
    p.add_argument("--timeout", type=positive_float, metavar="S",
                   help="stop after S seconds of silence: exit 0, or 1 if --count verdicts had not arrived")
    p.add_argument("--json", action="store_true", help="print the raw JSON payloads")
    p.add_argument("--curve-server-key", metavar="FILE",
                   help="the publisher's public key file (its publisher.curve is on)")
    p.add_argument("--curve-client-keys", metavar="FILE",
                   help="this subscriber's certificate (public + secret key, mode 0600)")
    p.set_defaults(func=subscribe)


def subscribe(args: argparse.Namespace) -> int:
    from pipeline.service.subscriber import subscribe_main

    if (args.curve_server_key is None) != (args.curve_client_keys is None):
        print("error: --curve-server-key and --curve-client-keys go together", file=sys.stderr)
        return 2
    mix_up = _key_mix_up(args.curve_server_key, args.curve_client_keys) if args.curve_server_key else None
    if mix_up:
        print(f"error: {mix_up}", file=sys.stderr)
        return 2
    curve = (args.curve_server_key, args.curve_client_keys) if args.curve_server_key else None
    return subscribe_main(args.endpoint, topic=args.topic, count=args.count, timeout_s=args.timeout,
                          json_lines=args.json, curve=curve)


def _key_mix_up(server_key: str, client_keys: str) -> str | None:
    """A public key file where the secret one belongs (or the reverse), said before the
    permission check would advise a chmod that cannot help."""
    from pathlib import Path

    from pipeline.parts.publishing.curve import CurveKeyError, read_key_file

    try:
        _, client_secret = read_key_file(Path(client_keys))
        _, server_secret = read_key_file(Path(server_key))
    except CurveKeyError as exc:
        return str(exc)
    if client_secret is None:
        return (f"--curve-client-keys {client_keys} holds only a public key: give this subscriber's own "
                "certificate, the NAME.key_secret file that `pipeline curve-keys DIR NAME` wrote")
    if server_secret is not None:
        return (f"--curve-server-key {server_key} holds a secret key: give the publisher's public key file "
                "(server.key), and keep server.key_secret on the publisher only")
    return None
