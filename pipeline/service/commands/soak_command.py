"""`pipeline soak CONFIG`: run the pipeline for a long time, record leaks and latency drift.

Never part of CI (the default is 10 minutes). Exit 0 when every target is met, 1 when
one is missed or the run cannot be judged (too short, too few verdicts: it says why);
the files it writes are listed at the end.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipeline.service.commands import non_negative_float, positive_float


def register(sub) -> None:
    p = sub.add_parser("soak", help="run the pipeline for a long time and record RSS, fds, threads, latency drift")
    p.add_argument("config")
    p.add_argument("--duration", type=positive_float, default=600.0, metavar="S", help="seconds to run (default 600)")
    p.add_argument("--interval", type=positive_float, default=5.0, metavar="S", help="seconds between samples (default 5)")
    p.add_argument("--warmup", type=non_negative_float, default=60.0, metavar="S",
                   help="seconds excluded from the growth and drift figures (default 60)")
    p.add_argument("--min-judged", type=positive_float, default=300.0, metavar="S",
                   help="shortest span after warm-up that is judged; shorter runs say 'cannot judge' and exit 1 "
                        "(default 300)")
    p.add_argument("--out", type=Path, default=Path("soak-results"), help="output directory (default soak-results)")
    p.set_defaults(func=soak)


def soak(args: argparse.Namespace) -> int:
    import platform
    import signal
    import threading

    from pipeline.config import load_config
    from pipeline.service.soak.result_files import plot_available, write_results
    from pipeline.service.soak.soak_run import run_soak

    config = load_config(args.config, require_model=True)
    if not plot_available():  # said now, not after ten minutes
        print("soak: matplotlib is not installed, so soak.png will not be drawn (pip install \".[soak]\"); "
              "soak.csv and soak.json will be", file=sys.stderr)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):  # stop early, still write what was measured
        signal.signal(sig, lambda *_: stop.set())
    samples, report = run_soak(config, args.duration, args.interval, args.warmup, _progress(args.duration), stop,
                               min_judged_s=args.min_judged)
    if not samples:
        print("error: stopped before the first sample; nothing written", file=sys.stderr)
        return 1
    meta = {"config": str(args.config), "host": platform.node(), "cpus": _cpus(), "python": platform.python_version()}
    for path in write_results(args.out, samples, report, meta):
        print(f"wrote {path}")
    for reason in report.cannot_judge:
        print(f"cannot judge: {reason}")
    if report.cannot_judge:
        return 1
    for target, met in report.passed.items():
        print(f"{'ok  ' if met else 'MISS'} {target}")
    return 0 if report.ok else 1


def _progress(duration_s: float):
    def show(s) -> None:
        print(f"soak {s.t_s:6.0f}/{duration_s:.0f} s: rss {s.rss_mb:7.1f} MB, fds {s.fds}, threads {s.threads}, "
              f"p50 {s.p50_ms:6.1f} ms, p99 {s.p99_ms:6.1f} ms, {s.verdicts_per_s:5.1f} verdicts/s, gaps {s.gaps}",
              file=sys.stderr, flush=True)

    return show


def _cpus() -> int:
    import os

    # the platform, not a part: os has sched_getaffinity on Linux only
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 0)
