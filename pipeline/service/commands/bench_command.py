"""`pipeline bench CONFIG`: measure the real pipeline, optionally beside the naive loop
and Ultralytics, and sweep dynamic batching; print a table, write JSON and a PNG."""

from __future__ import annotations

import argparse
import shlex
import sys

from pipeline.service.commands import non_negative_float, positive_float, positive_int


def batch_sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers like 1,2,4,8, got {text!r}") from None
    if not sizes or any(not 1 <= s <= 64 for s in sizes):
        raise argparse.ArgumentTypeError(f"batch sizes must be 1..64 (model.max_batch's range), got {text!r}")
    return sizes


def register(sub) -> None:
    p = sub.add_parser("bench", help="measure latency and throughput of the pipeline on pre-rendered frames",
                       description="Run the real pipeline built from CONFIG on pre-rendered frames of its first "
                                   "camera (cloned --cameras times) and report capture-to-publish latency, "
                                   "per-stage latency, throughput, budget misses and NOT_INSPECTED.")
    p.add_argument("config")
    p.add_argument("--duration", type=positive_float, default=10.0, metavar="S", help="recorded seconds per system (default 10)")
    p.add_argument("--warmup", type=non_negative_float, default=2.0, metavar="S", help="unrecorded seconds first (default 2)")
    p.add_argument("--cameras", type=positive_int, default=1, metavar="N", help="clones of the first camera (default 1)")
    p.add_argument("--rate", type=positive_float, metavar="FPS", help="frames/s per camera (default: flat out)")
    p.add_argument("--compare", action="store_true", help="also run the naive loop and Ultralytics (if installed)")
    p.add_argument("--batch-sweep", type=batch_sizes, metavar="1,2,4,8", help="also run once per model.max_batch")
    p.add_argument("--max-wait-us", type=int, metavar="US", help="model.max_wait_us for the batch sweep")
    p.add_argument("--switch-interval-ms", type=positive_float, metavar="MS",
                   help="sys.setswitchinterval for the run, overriding the config's runtime.switch_interval_ms "
                        "(default: 0.5 ms with a GPU backend, Python's 5 ms otherwise)")
    p.add_argument("--ring", type=positive_int, default=8, metavar="N", help="pre-rendered frames per camera (default 8)")
    p.add_argument("--engine-s", type=float, default=2.0, metavar="S",
                   help="seconds of the backend alone per batch size, in the same run (default 2; 0: skip)")
    p.add_argument("--endpoint", default="tcp://127.0.0.1:*", help="where the bench publishes (default: a free port)")
    p.add_argument("--json", metavar="FILE", help="write the full report as JSON")
    p.add_argument("--png", metavar="FILE", help="draw latency CDFs (needs matplotlib: the 'bench' extra)")
    p.set_defaults(func=bench)


def run_kind(rate: float | None, cameras: int) -> str:
    """The first line: what the latency figures of this run mean."""
    if rate is not None:
        return (f"latency run: {cameras} camera(s) at {rate:g} frames/s each; latency is what a part "
                "waits at that rate")
    return (f"capacity run: {cameras} camera(s) flat out (no --rate); throughput is the figure, latency "
            "includes queueing behind the bottleneck (give --rate FPS for a latency run)")


def bench(args: argparse.Namespace) -> int:
    import importlib.util
    from pathlib import Path

    from pipeline.config import load_config
    from pipeline.service.bench.report import format_table
    from pipeline.service.bench.runner import BenchSettings
    from pipeline.service.bench.suite import SuiteOptions, run_suite

    if args.png and importlib.util.find_spec("matplotlib") is None:  # said before minutes of measuring
        print('error: --png needs matplotlib: pip install ".[bench]"', file=sys.stderr)
        return 2
    config = load_config(args.config, require_model=True)
    print(f"bench: {run_kind(args.rate, args.cameras)}", file=sys.stderr, flush=True)
    settings = BenchSettings(args.duration, max(0.0, args.warmup), args.cameras, args.rate, args.ring, args.endpoint,
                             max(0.0, args.engine_s))
    options = SuiteOptions(settings, args.compare, args.batch_sweep or (), args.max_wait_us, args.switch_interval_ms,
                           Path(args.json) if args.json else None, Path(args.png) if args.png else None,
                           command="pipeline " + shlex.join(sys.argv[1:]), config_path=args.config)
    report = run_suite(config, options, lambda message: print(f"bench: {message}", file=sys.stderr, flush=True))
    print(format_table(report))
    return 0
