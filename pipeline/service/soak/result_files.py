"""The soak's files: `soak.csv` (one row per sample), `soak.json` (the verdict on each
target) and `soak.png` (the plot docs/RELIABILITY.md shows; only with the optional
matplotlib, the `soak` extra).
"""

from __future__ import annotations

import csv
import json
from dataclasses import asdict
from pathlib import Path

from pipeline.service.soak.judgement import Sample, SoakReport


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
