"""The soak's judge: samples after warm-up against the reliability targets.

Owns the targets (RSS growth, fds, threads, p99 drift, sequence gaps), the `Sample` a
run records every interval and the `SoakReport` judging them, or saying why they cannot
be judged (too short, overlapping drift windows, too few verdicts). Pure: numbers in,
a report out (tests/test_soak.py judges made-up runs).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

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
