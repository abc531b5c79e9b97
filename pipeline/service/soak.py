"""Soak test: run the real pipeline for a long time and watch for leaks and drift.

Owns sampling the daemon's own process (RSS, open file descriptors, OS threads, from
/proc, so Linux only) and what an independent subscriber sees (end-to-end latency per
interval, verdicts per second, sequence gaps), judging the run against the reliability
targets, and writing the results: `soak.csv` (one row per sample), `soak.json` (the
verdict on each target) and `soak.png` (the plot docs/RELIABILITY.md shows).

What crosses the boundary: a `PipelineConfig` and timings come in; a `SoakReport` and
the three files go out. The pipeline under test is the real one (`build_parts`); the
subscriber is an ordinary SUB socket on its own thread, so CURVE configs are not
supported here; its latency is the wire's `latency_ms.total`, the figure every other
report uses. The run goes through the run driver (pipeline.composition.driver): until the duration,
the stop event, a crash or the end of every source, sampling on the driver's tick.
Memory held per sample is a few numbers, never per-frame data, so the soak itself does
not grow the RSS it measures.
"""

from __future__ import annotations

import csv
import json
import os
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import zmq

from pipeline.composition.driver import RunDriver, StopReason, Until
from pipeline.config.models import PipelineConfig
from pipeline.core.protocol import ProtocolError, decode

TARGET_RSS_MB_PER_H = 5.0
TARGET_P99_DRIFT = 0.10
DRIFT_WINDOW_S = 60.0  # p99 drift compares the first and the last minute after warm-up
MIN_JUDGED_S = 300.0  # shortest judged span (after warm-up): a memory slope from less is noise
MIN_VERDICTS_PER_WINDOW = 100  # fewer verdicts in a drift window: its p99 says nothing


@dataclass(frozen=True)
class Sample:
    t_s: float
    rss_mb: float
    fds: int
    threads: int
    p50_ms: float
    p99_ms: float
    verdicts_per_s: float
    verdicts: int
    gaps: int


@dataclass
class SoakReport:
    duration_s: float
    warmup_s: float
    samples: int
    verdicts: int
    gaps: int
    rss_mb_per_h: float
    fd_growth: int
    thread_growth: int
    p99_first_ms: float
    p99_last_ms: float
    p99_drift: float
    passed: dict[str, bool] = field(default_factory=dict)
    cannot_judge: list[str] = field(default_factory=list)  # why the run says nothing; empty when judged

    @property
    def ok(self) -> bool:
        return not self.cannot_judge and all(self.passed.values())


def process_sample() -> tuple[float, int, int]:
    """(resident MB, open fds, OS threads) of this process."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    threads = next(int(line.split()[1]) for line in Path("/proc/self/status").read_text().splitlines()
                   if line.startswith("Threads:"))
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20, len(os.listdir("/proc/self/fd")), threads


class Listener:
    """An independent subscriber: latency of each verdict, and seq gaps per camera."""

    def __init__(self, endpoint: str):
        self._context = zmq.Context()
        self._sock = self._context.socket(zmq.SUB)
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.setsockopt(zmq.RCVTIMEO, 100)
        self._sock.setsockopt(zmq.SUBSCRIBE, b"")
        self._sock.connect(endpoint)
        self._lock = threading.Lock()
        self._latencies: list[float] = []  # since the last `take`; bounded by one interval
        self._next_seq: dict[str, int] = {}
        self.verdicts = 0
        self.gaps = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="soak-listener", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                _, payload = self._sock.recv_multipart()
                msg = decode(payload)
            except (zmq.Again, ValueError, ProtocolError):
                continue
            if msg["type"] == "verdict":
                self._verdict(msg)

    def _verdict(self, msg: dict) -> None:
        camera, seq = msg["camera_id"], msg["seq"]
        with self._lock:
            expected = self._next_seq.get(camera, seq)
            self.gaps += seq != expected
            self._next_seq[camera] = seq + 1
            self.verdicts += 1
            self._latencies.append(msg["latency_ms"]["total"])

    def take(self) -> list[float]:
        with self._lock:
            taken, self._latencies = self._latencies, []
        return taken

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self._sock.close()
        self._context.term()


def run_soak(config: PipelineConfig, duration_s: float, interval_s: float, warmup_s: float,
             progress: Callable[[Sample], None] | None = None,
             stop: threading.Event | None = None, min_judged_s: float = MIN_JUDGED_S) -> tuple[list[Sample], SoakReport]:
    """Run the pipeline for `duration_s`, sampling every `interval_s`; early stop on `stop`."""
    stop = stop or threading.Event()
    listener = Listener(config.publisher.endpoint)
    driver = RunDriver(config)
    sampler = Sampler(listener, interval_s, progress)
    try:
        if driver.open(interrupted=stop.is_set) is not None:
            try:
                driver.start()
                sampler.begin()
                if driver.run(Until(duration_s, signal=stop.is_set), tick=sampler.tick) is StopReason.DURATION:
                    sampler.finish(duration_s)
            finally:
                driver.stop()
    finally:
        listener.close()
    return sampler.samples, analyse(sampler.samples, warmup_s, min_judged_s)


class Sampler:
    """Takes a `Sample` every `interval_s` from `begin`, on the driver's tick."""

    def __init__(self, listener: Listener, interval_s: float, progress: Callable[[Sample], None] | None):
        self.listener = listener
        self.interval_s = interval_s
        self.progress = progress
        self.samples: list[Sample] = []
        self._start = self._due = self._last = 0.0

    def begin(self) -> None:
        self._start = self._last = time.monotonic()
        self._due = self._start + self.interval_s

    def tick(self) -> None:
        if time.monotonic() >= self._due:
            self._due += self.interval_s
            self.take()

    def finish(self, duration_s: float) -> None:
        """The last sample, at the end of the duration (unless the last tick just took it)."""
        if not self.samples or self.samples[-1].t_s < duration_s:
            self.take()

    def take(self) -> None:
        now = time.monotonic()
        self.samples.append(_sample(now - self._start, self.listener, max(now - self._last, 1e-3)))
        self._last = now
        if self.progress is not None:
            self.progress(self.samples[-1])


def _sample(t_s: float, listener: Listener, interval_s: float) -> Sample:
    rss, fds, threads = process_sample()
    latencies = listener.take()
    p50, p99 = np.percentile(latencies, (50, 99)) if latencies else (float("nan"), float("nan"))
    return Sample(round(t_s, 2), round(rss, 2), fds, threads, round(float(p50), 3), round(float(p99), 3),
                  round(len(latencies) / interval_s, 2), listener.verdicts, listener.gaps)


def analyse(samples: list[Sample], warmup_s: float, min_judged_s: float = MIN_JUDGED_S) -> SoakReport:
    """Judge the samples after warm-up against the targets, or say why they cannot be
    judged (too short, overlapping drift windows, too few verdicts)."""
    post = [s for s in samples if s.t_s >= warmup_s]
    span_s = post[-1].t_s - post[0].t_s if len(post) >= 2 else 0.0
    first, last = _window_p99(post, first=True), _window_p99(post, first=False)
    drift = (last - first) / first if first > 0 else float("nan")
    slope_per_s = _rss_slope(post) if span_s >= min_judged_s else float("nan")
    report = SoakReport(
        duration_s=samples[-1].t_s if samples else 0.0, warmup_s=warmup_s, samples=len(samples),
        verdicts=samples[-1].verdicts if samples else 0, gaps=samples[-1].gaps if samples else 0,
        rss_mb_per_h=round(slope_per_s * 3600, 3),
        fd_growth=post[-1].fds - post[0].fds if post else 0,
        thread_growth=post[-1].threads - post[0].threads if post else 0,
        p99_first_ms=round(first, 3), p99_last_ms=round(last, 3), p99_drift=round(drift, 4),
        cannot_judge=_unjudgeable(post, span_s, min_judged_s))
    report.passed = {
        f"rss growth <= {TARGET_RSS_MB_PER_H:g} MB/h": report.rss_mb_per_h <= TARGET_RSS_MB_PER_H,
        "no fd growth": report.fd_growth <= 0,
        "no thread growth": report.thread_growth <= 0,
        f"p99 drift < {TARGET_P99_DRIFT:.0%}": bool(drift < TARGET_P99_DRIFT),
        "no seq gaps": report.gaps == 0,
    }
    return report


def _rss_slope(post: list[Sample]) -> float:
    """MB per second from a least-squares line through every sample after warm-up."""
    t = np.array([s.t_s for s in post])
    return float(np.polyfit(t, np.array([s.rss_mb for s in post]), 1)[0])


def _unjudgeable(post: list[Sample], span_s: float, min_judged_s: float) -> list[str]:
    reasons = []
    if span_s < min_judged_s:
        reasons.append(f"only {span_s:.0f} s after warm-up; judging needs {min_judged_s:.0f} s "
                       "(a memory slope from less is noise): run longer or lower --min-judged")
    if span_s < 2 * DRIFT_WINDOW_S:
        reasons.append(f"the first and last {DRIFT_WINDOW_S:.0f} s after warm-up overlap, so p99 drift "
                       f"compares a window with itself: needs {2 * DRIFT_WINDOW_S:.0f} s after warm-up")
    for name, window in (("first", _window(post, first=True)), ("last", _window(post, first=False))):
        verdicts = window[-1].verdicts - window[0].verdicts if len(window) >= 2 else 0
        if verdicts < MIN_VERDICTS_PER_WINDOW:
            reasons.append(f"{verdicts} verdicts in the {name} {DRIFT_WINDOW_S:.0f} s after warm-up; "
                           f"a p99 needs at least {MIN_VERDICTS_PER_WINDOW}")
    return reasons


def _window(post: list[Sample], first: bool) -> list[Sample]:
    """The samples of the first (or last) DRIFT_WINDOW_S after warm-up."""
    if not post:
        return []
    edge = post[0].t_s + DRIFT_WINDOW_S if first else post[-1].t_s - DRIFT_WINDOW_S
    return [s for s in post if (s.t_s <= edge if first else s.t_s >= edge)]


def _window_p99(post: list[Sample], first: bool) -> float:
    """Median of the per-interval p99s over the first (or last) DRIFT_WINDOW_S after warm-up."""
    chosen = [s.p99_ms for s in _window(post, first) if s.p99_ms == s.p99_ms]
    return float(np.median(chosen)) if chosen else float("nan")


def write_results(out_dir: Path, samples: list[Sample], report: SoakReport, meta: dict) -> list[Path]:
    """soak.csv, soak.json and (when matplotlib is installed: `plot_available()`, which the
    command checks before the run) soak.png in `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path, json_path = out_dir / "soak.csv", out_dir / "soak.json"
    with csv_path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(Sample.__dataclass_fields__))
        writer.writeheader()
        writer.writerows(asdict(s) for s in samples)
    body = {k: (None if isinstance(v, float) and v != v else v) for k, v in asdict(report).items()}  # NaN: null
    json_path.write_text(json.dumps({**meta, **body, "ok": report.ok}, indent=2) + "\n")
    written = [csv_path, json_path]
    try:
        import matplotlib
    except ImportError:  # the optional `soak` extra
        return written
    matplotlib.use("Agg")  # files only: no display on a line PC or in CI
    written.append(plot(samples, report, out_dir / "soak.png"))
    return written


def plot_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("matplotlib") is not None


def plot(samples: list[Sample], report: SoakReport, path: Path) -> Path:
    """Four panels over time: RSS, fds and threads, latency p50/p99, verdicts per second."""
    import matplotlib.pyplot as plt

    t = [s.t_s / 60 for s in samples]
    fig, axes = plt.subplots(4, 1, figsize=(9, 10), sharex=True)
    panels = [
        (axes[0], [("RSS (MB)", [s.rss_mb for s in samples])], f"RSS, {report.rss_mb_per_h:+.2f} MB/h after warm-up"),
        (axes[1], [("open fds", [s.fds for s in samples]), ("OS threads", [s.threads for s in samples])],
         f"fds {report.fd_growth:+d}, threads {report.thread_growth:+d} after warm-up"),
        (axes[2], [("p50 (ms)", [s.p50_ms for s in samples]), ("p99 (ms)", [s.p99_ms for s in samples])],
         f"end-to-end latency, p99 drift {report.p99_drift:+.1%}"),
        (axes[3], [("verdicts/s", [s.verdicts_per_s for s in samples])], f"{report.verdicts} verdicts, {report.gaps} gaps"),
    ]
    for ax, series, title in panels:
        for label, values in series:
            ax.plot(t, values, label=label)
        ax.axvline(report.warmup_s / 60, color="grey", linestyle=":", label="end of warm-up")
        ax.set_title(title, fontsize=10)
        ax.legend(loc="best", fontsize=8)
        ax.grid(alpha=0.3)
    axes[-1].set_xlabel("minutes")
    verdict = "CANNOT JUDGE" if report.cannot_judge else "all targets met" if report.ok else "TARGET MISSED"
    fig.suptitle(f"pipeline soak: {verdict}")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
