"""The latency/throughput curve of the infer stage's dynamic batching over `max_batch`.

Owns the sweep: the same bench (cameras, rate or flat out, duration) once per batch
size, each a fresh pipeline whose model config differs only in `max_batch` (and
`max_wait_us` when given), so the curve shows what batching across cameras buys and
what it costs in latency. A point the model cannot run (a fixed batch dimension) is
reported with its reason and the sweep goes on.
"""

from __future__ import annotations

from pipeline.composition.app import StartupError
from pipeline.config.models import PipelineConfig
from pipeline.parts.sources.frame_source import SourceFrame
from pipeline.service.bench.report import summarise
from pipeline.service.bench.runner import BenchSettings, Progress, model_variant, run_pipeline


def sweep(config: PipelineConfig, settings: BenchSettings, frames: dict[str, list[SourceFrame]], sizes: list[int],
          max_wait_us: int | None, progress: Progress) -> list[dict]:
    """One row per batch size; `config` is already the bench's (`runner.bench_config`)."""
    rows = []
    wait = config.model.max_wait_us if max_wait_us is None else max_wait_us
    for size in sizes:
        progress(f"batch sweep: max_batch {size}, max_wait_us {wait}")
        try:
            cfg = model_variant(config, max_batch=size, max_wait_us=wait)
        except ValueError as exc:  # pydantic's ValidationError: not a valid config at this size
            rows.append({"max_batch": size, "max_wait_us": wait, "error": str(exc)})
            continue
        try:
            result = run_pipeline(cfg, settings, frames, lambda msg, s=size: progress(f"max_batch {s}: {msg}"))
        except StartupError as exc:  # e.g. a model with a fixed batch dimension
            rows.append({"max_batch": size, "max_wait_us": wait, "error": str(exc)})
            continue
        summary, _ = summarise("pipeline", result, cfg.budget_ms)
        rows.append({**_row(size, wait, summary), "infer_queue": cfg.queues.infer.size})
    return rows


def _row(size: int, wait: int, summary: dict) -> dict:
    keep = ("fps", "p50_ms", "p90_ms", "p99_ms", "p99_9_ms", "max_ms", "frames", "not_inspected", "budget_miss_rate",
            "mean_batch", "mixed_camera_batches", "batch_sizes", "stages_ms", "gpu_memory_mib")
    return {"max_batch": size, "max_wait_us": wait, **{k: summary.get(k) for k in keep}}
