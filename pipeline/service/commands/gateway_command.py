"""`pipeline gateway CONFIG`: forward verdicts to a PLC over Modbus/TCP and/or OPC UA
(docs/GATEWAY.md). Exit 2 with what to install when the `gateway` extra is missing."""

from __future__ import annotations

import argparse
import importlib.util
import sys

INSTALL_HINT = "pip install 'inspection-pipeline[gateway]'  (pymodbus, asyncua)"


def register(sub) -> None:
    p = sub.add_parser("gateway", help="forward verdicts to a PLC (Modbus/TCP, OPC UA), fail-safe")
    p.add_argument("config", help="gateway YAML, e.g. configs/gateway.yaml")
    p.add_argument("--check", action="store_true", help="only validate the config (and the libraries it needs)")
    p.set_defaults(func=gateway)


def missing_libraries(config) -> list[str]:
    """The libraries the configured outputs need that are not installed."""
    needed = (["pymodbus"] if config.modbus is not None else []) + (["asyncua"] if config.opcua is not None else [])
    return [name for name in needed if importlib.util.find_spec(name) is None]


def gateway(args: argparse.Namespace) -> int:
    from pipeline.service.gateway.gateway_config import load_gateway_config

    config = load_gateway_config(args.config)  # a ConfigError becomes exit 2 in pipeline.service.cli
    missing = missing_libraries(config)
    if missing:
        print(f"error: the gateway needs {', '.join(missing)}, which is not installed; install it with:\n"
              f"  {INSTALL_HINT}", file=sys.stderr)
        return 2
    if args.check:
        print(f"{args.config}: OK ({len(config.cameras)} camera(s))")
        return 0
    return _serve(config)


def _serve(config) -> int:
    import zmq

    from pipeline.parts.publishing.curve import CurveKeyError
    from pipeline.service.gateway.gateway_service import GatewayService

    try:
        service = GatewayService(config)
    except CurveKeyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except zmq.ZMQError as exc:
        print(f"error: cannot subscribe: {exc.strerror}", file=sys.stderr)
        return 2
    return service.run()
