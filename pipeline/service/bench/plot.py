"""The bench's picture: latency CDFs per stage and end to end, and the batching curve.

Owns the PNG. matplotlib (the optional `bench` extra) is imported here only, with the
Agg backend, so the bench runs headless and without it (`available()` says why not).
Panels: one per system measured, each stage's CDF plus end to end on a log time axis
with the budget marked; then all systems' end-to-end CDFs together; then, after a batch
sweep, throughput and p50/p99 over `max_batch`.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np


def available() -> str | None:
    """Why no PNG can be drawn here, or None when it can."""
    if importlib.util.find_spec("matplotlib") is None:
        return "matplotlib is not installed (pip install 'inspection-pipeline[bench]')"
    return None


def _cdf(ax, ms: np.ndarray, label: str, **style) -> None:
    if len(ms) == 0:
        return
    xs = np.sort(ms)
    ax.plot(xs, np.arange(1, len(xs) + 1) / len(xs), label=f"{label} (p99 {np.percentile(xs, 99):.2f})", **style)


def _style_latency_axis(ax, title: str, budget_ms: float) -> None:
    ax.set_xscale("log")
    ax.axvline(budget_ms, color="red", linestyle=":", linewidth=1, label=f"budget {budget_ms:g} ms")
    ax.set_xlabel("latency (ms, log)")
    ax.set_ylabel("fraction of frames")
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")


def draw(path: Path, report: dict, latencies: dict[str, dict[str, np.ndarray]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sweep = [r for r in report.get("batch_sweep", []) if "error" not in r]
    panels = len(latencies) + (len(latencies) > 1) + bool(sweep)
    fig, axes = plt.subplots(1, panels, figsize=(5.5 * panels, 4.5), squeeze=False)
    axes = list(axes[0])
    budget = report["meta"]["budget_ms"]
    for name, lat in latencies.items():
        ax = axes.pop(0)
        for stage, ms in lat.items():
            if stage != "end_to_end":
                _cdf(ax, ms, stage, linewidth=1)
        _cdf(ax, lat.get("end_to_end", np.zeros(0)), "end to end", linewidth=2.5, color="black")
        _style_latency_axis(ax, f"{name}: {report[name]['fps']:.0f} frames/s", budget)
    if len(latencies) > 1:
        ax = axes.pop(0)
        for name, lat in latencies.items():
            _cdf(ax, lat.get("end_to_end", np.zeros(0)), name, linewidth=2)
        _style_latency_axis(ax, "capture to publish, side by side", budget)
    if sweep:
        _draw_sweep(axes.pop(0), sweep)
    fig.suptitle(report["meta"]["title"], fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _draw_sweep(ax, rows: list[dict]) -> None:
    sizes = [r["max_batch"] for r in rows]
    ax.plot(sizes, [r["fps"] for r in rows], "o-", color="tab:blue", label="frames/s")
    ax.set_xscale("log", base=2)
    ax.set_xticks(sizes, [str(s) for s in sizes])
    ax.set_xlabel("max_batch")
    ax.set_ylabel("inspected frames/s", color="tab:blue")
    twin = ax.twinx()
    twin.plot(sizes, [r["p50_ms"] for r in rows], "s--", color="tab:orange", label="p50 ms")
    twin.plot(sizes, [r["p99_ms"] for r in rows], "^--", color="tab:red", label="p99 ms")
    twin.set_ylabel("latency (ms)")
    ax.set_title(f"dynamic batching (max_wait_us {rows[0]['max_wait_us']})", fontsize=10)
    ax.grid(True, alpha=0.3)
    lines = ax.get_lines() + twin.get_lines()
    ax.legend(lines, [line.get_label() for line in lines], fontsize=7, loc="upper left")
