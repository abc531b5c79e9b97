"""Records -> numbers: percentiles, per-stage latency, rates, ratios, the table and JSON.

Owns the definitions behind every published figure:
- `frames`: verdicts of frames captured in the window, plus frames a loop never reached;
- latency: capture to publish, the wire's `latency_ms.total` (`PublishedVerdict`: the
  publish stage's clock reading right before the send), over inspected frames (every
  outcome but NOT_INSPECTED); `fps`: inspected frames per second of window;
- a stage's latency: its mark minus the previous mark, so it includes the wait in the
  queue in front of it ("publish": the publish time minus the decide mark); split at the
  stage's take time into `stages_wait_ms` (in its queue) and `stages_work_ms` (its own
  work, batch peers included), so a slow stage is told from a waiting one;
- budget miss: a frame without an inspected verdict within `budget_ms` (flagged late,
  slower than the budget, NOT_INSPECTED, or never reached by a loop), over all frames;
- ratios: pipeline vs each other system, throughput (x faster) and p99 (x lower).
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np

from pipeline.core.messages import last_mark_ns, mark_spans, stage_split
from pipeline.service.bench.runner import RunResult

PERCENTILES = {"p50_ms": 50, "p90_ms": 90, "p99_ms": 99, "p99_9_ms": 99.9}
NOT_INSPECTED = "NOT_INSPECTED"


def latency_stats(ms: np.ndarray) -> dict[str, float | None]:
    if len(ms) == 0:
        return {**{k: None for k in PERCENTILES}, "max_ms": None, "mean_ms": None}
    values = np.percentile(ms, list(PERCENTILES.values()))
    stats = {k: round(float(v), 3) for k, v in zip(PERCENTILES, values)}
    return {**stats, "max_ms": round(float(ms.max()), 3), "mean_ms": round(float(ms.mean()), 3)}


def samples(result: RunResult) -> dict[str, np.ndarray]:
    """Latency samples in ms of inspected frames: "end_to_end", each stage, "capture_lag"."""
    out: dict[str, list[float]] = defaultdict(list)
    for _cam, outcome, _late, t_capture, marks, t_publish, camera_ts, _takes in result.recorder.records:
        if outcome == NOT_INSPECTED:
            continue
        out["end_to_end"].append((t_publish - t_capture) / 1e6)
        for stage, start, t_ns in mark_spans(t_capture, marks):
            out[stage].append((t_ns - start) / 1e6)
        out["publish"].append((t_publish - last_mark_ns(t_capture, marks)) / 1e6)
        if camera_ts is not None:
            out["capture_lag"].append((t_capture - camera_ts) / 1e6)
    return {name: np.asarray(v, np.float64) for name, v in out.items()}


def split_samples(result: RunResult) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Per stage, ms waited in its queue and ms of its own work, over inspected frames."""
    wait: dict[str, list[float]] = defaultdict(list)
    work: dict[str, list[float]] = defaultdict(list)
    for _cam, outcome, _late, t_capture, marks, t_publish, _ts, takes in result.recorder.records:
        if outcome == NOT_INSPECTED or not takes:
            continue
        for stage, wait_ns, work_ns in stage_split(t_capture, marks, takes):
            wait[stage].append(wait_ns / 1e6)
            work[stage].append(work_ns / 1e6)
        publish_take = dict(takes).get("publish")
        if publish_take is not None:
            last = last_mark_ns(t_capture, marks)
            wait["publish"].append(max(0, publish_take - last) / 1e6)
            work["publish"].append((t_publish - max(publish_take, last)) / 1e6)
    as_arrays = lambda d: {k: np.asarray(v, np.float64) for k, v in d.items()}  # noqa: E731
    return as_arrays(wait), as_arrays(work)


def summarise(name: str, result: RunResult, budget_ms: float) -> tuple[dict, dict[str, np.ndarray]]:
    records, rec = result.recorder.records, result.recorder
    lat = samples(result)
    e2e = lat.get("end_to_end", np.zeros(0))
    not_inspected = sum(r[1] == NOT_INSPECTED for r in records) + rec.missed
    frames = len(records) + rec.missed
    late = sum(r[1] == NOT_INSPECTED or r[2] or (r[5] - r[3]) / 1e6 > budget_ms for r in records) + rec.missed
    summary = {
        "system": name, "backend": result.backend, "frames": frames, "inspected": len(e2e),
        "not_inspected": not_inspected, "not_inspected_rate": _rate(not_inspected, frames),
        "fps": round(len(e2e) / rec.window_s, 2), "window_s": round(rec.window_s, 3),
        **latency_stats(e2e), "budget_ms": budget_ms, "budget_miss_rate": _rate(late, frames),
        "outcomes": _outcomes(records, rec.missed),
        "stages_ms": {k: latency_stats(v) for k, v in lat.items() if k not in ("end_to_end", "capture_lag")},
        **_split_stats(result),
        "capture_lag_ms": latency_stats(lat["capture_lag"]) if "capture_lag" in lat else None,
        "gpu_memory_mib": result.gpu_memory_mib,
    }
    if result.queue_drops is not None:
        summary["queue_drops"] = result.queue_drops
    if result.batches:
        summary.update(batch_summary(result.batches))
    return summary, lat


def _split_stats(result: RunResult) -> dict:
    wait, work = split_samples(result)
    if not wait:
        return {}
    return {"stages_wait_ms": {k: latency_stats(v) for k, v in wait.items()},
            "stages_work_ms": {k: latency_stats(v) for k, v in work.items()}}


def batch_summary(batches: dict[tuple[int, int], int]) -> dict:
    """Batch sizes the infer stage handled, their mean, and how many mixed cameras."""
    sizes: dict[int, int] = defaultdict(int)
    for (size, _cameras), count in batches.items():
        sizes[size] += count
    runs = sum(sizes.values())
    mixed = sum(count for (_size, cameras), count in batches.items() if cameras > 1)
    return {"batch_sizes": {str(k): v for k, v in sorted(sizes.items())},
            "mean_batch": round(sum(k * v for k, v in sizes.items()) / runs, 3) if runs else 0.0,
            "mixed_camera_batches": mixed}


def _rate(part: int, whole: int) -> float:
    return round(part / whole, 6) if whole else 0.0


def _outcomes(records, missed: int) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for r in records:
        counts[r[1]] += 1
    if missed:
        counts["missed (no verdict)"] = missed
    return dict(counts)


def ratios(systems: dict[str, dict]) -> dict[str, dict[str, float | None]]:
    """How the pipeline compares with each other system measured in the same run."""
    ours = systems.get("pipeline")
    out = {}
    for name, other in systems.items():
        if name == "pipeline" or ours is None:
            continue
        out[name] = {"throughput_x": _div(ours["fps"], other["fps"]), "p99_lower_x": _div(other["p99_ms"], ours["p99_ms"])}
    return out


def _div(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a is not None and b else None


def write_json(path: Path, report: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, default=str) + "\n")


# --------------------------------------------------------------------------- table


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def format_table(report: dict) -> str:
    systems = [report[k] for k in ("pipeline", "naive", "ultralytics") if k in report]
    lines = [f"{'system':<12} {'fps':>9} {'p50':>8} {'p90':>8} {'p99':>8} {'p99.9':>8} {'max':>8} "
             f"{'frames':>7} {'NOT_INSP':>9} {'>budget':>8}  (latency in ms, capture to publish)"]
    for s in systems:
        lines.append(f"{s['system']:<12} {s['fps']:>9.1f} {_ms(s['p50_ms']):>8} {_ms(s['p90_ms']):>8} "
                     f"{_ms(s['p99_ms']):>8} {_ms(s['p99_9_ms']):>8} {_ms(s['max_ms']):>8} {s['frames']:>7} "
                     f"{s['not_inspected']:>9} {s['budget_miss_rate'] * 100:>7.2f}%")
    for s in systems:
        stages = "  ".join(f"{k} {_ms(v['p50_ms'])}/{_ms(v['p99_ms'])}" for k, v in s["stages_ms"].items())
        lines.append(f"  {s['system']} per stage p50/p99 ms: {stages}")
        for part in ("wait", "work"):
            split = s.get(f"stages_{part}_ms")
            if split:
                lines.append(f"    {part:<4} p50/p99 ms: " + "  ".join(
                    f"{k} {_ms(v['p50_ms'])}/{_ms(v['p99_ms'])}" for k, v in split.items()))
        extra = [f"backend {s['backend']}"]
        if s.get("gpu_memory_mib") is not None:
            extra.append(f"GPU memory {s['gpu_memory_mib']:.0f} MiB")
        if s.get("batch_sizes"):
            sizes = ", ".join(f"{v} of {k}" for k, v in s["batch_sizes"].items())
            extra.append(f"infer batches: {sizes} (mean {s['mean_batch']:.2f}; {s['mixed_camera_batches']} mixed cameras)")
        lines.append("    " + "; ".join(extra))
    lines += format_engine(report.get("engine"), report.get("pipeline"))
    for name, r in report.get("ratios", {}).items():
        lines.append(f"pipeline vs {name}: {_x(r['throughput_x'])} throughput, {_x(r['p99_lower_x'])} lower p99")
    for name, reason in report.get("skipped", {}).items():
        lines.append(f"{name}: skipped ({reason})")
    lines += format_sweep(report.get("batch_sweep", []))
    return "\n".join(lines)


def _x(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def format_sweep(rows: list[dict]) -> list[str]:
    if not rows:
        return []
    lines = [f"batch sweep (max_wait_us {rows[0]['max_wait_us']}): {'max_batch':>9} {'fps':>9} {'p50':>8} "
             f"{'p99':>8} {'NOT_INSP':>9} {'mean batch':>10}"]
    for r in rows:
        if "error" in r:
            lines.append(f"{'':<33}{r['max_batch']:>9}  not run: {r['error']}")
            continue
        lines.append(f"{'':<33}{r['max_batch']:>9} {r['fps']:>9.1f} {_ms(r['p50_ms']):>8} {_ms(r['p99_ms']):>8} "
                     f"{r['not_inspected']:>9} {r['mean_batch']:>10.2f}")
    return lines


def format_engine(engine: dict | None, pipeline: dict | None) -> list[str]:
    if not engine:
        return []
    if "error" in engine:
        return [f"backend alone: not measured ({engine['error']})"]
    parts = [f"batch {r['batch']}: {r['fps']:.1f} frames/s, p50/p99 {_ms(r['p50_ms'])}/{_ms(r['p99_ms'])} ms per batch"
             for r in engine["rows"]]
    lines = [f"backend alone ({engine['backend']}, same run): " + "; ".join(parts)]
    if pipeline and engine.get("pipeline_over_engine") is not None:
        lines.append(f"pipeline / backend alone at batch {engine['reference_batch']}: "
                     f"{engine['pipeline_over_engine']:.2f} of its throughput")
    return lines
