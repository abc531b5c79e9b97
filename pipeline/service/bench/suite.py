"""One `pipeline bench` invocation: what to run, in which order, and the report.

Owns the sequence: pre-render the frames once, run the real pipeline, then (with
`compare`) the naive loop and Ultralytics on the same frames, model and publisher
settings, then the batch sweep; then the table, JSON and PNG. The interpreter's switch
interval, a knob worth measuring (see DESIGN.md): the pipeline runs under the config's
`runtime.switch_interval_ms` (set by the run driver), which `--switch-interval-ms`
overrides, then for the whole suite; restored at the end.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.config.model_onnxruntime import OnnxRuntimeCudaKeys
from pipeline.config.models import PipelineConfig
from pipeline.service.bench import batching, engine, naive, plot, report, ultralytics_loop
from pipeline.service.bench.host import describe_machine
from pipeline.service.bench.runner import BenchSettings, Progress, bench_config, render_frames, run_pipeline
from pipeline.service.bench.sequential import SequentialLoop


@dataclass(frozen=True)
class SuiteOptions:
    settings: BenchSettings
    compare: bool = False
    batch_sizes: tuple[int, ...] = ()
    max_wait_us: int | None = None
    switch_interval_ms: float | None = None
    json_path: Path | None = None
    png_path: Path | None = None
    command: str = ""
    config_path: str = ""
    notes: dict = field(default_factory=dict)


def run_suite(config: PipelineConfig, opts: SuiteOptions, progress: Progress) -> dict:
    previous = sys.getswitchinterval()
    if opts.switch_interval_ms is not None:  # the flag overrides the config's runtime.switch_interval_ms
        runtime = config.runtime.model_copy(update={"switch_interval_ms": opts.switch_interval_ms})
        config = config.model_copy(update={"runtime": runtime})
        sys.setswitchinterval(opts.switch_interval_ms / 1000)  # also for the loops run outside the driver
    try:
        return _run(config, opts, progress)
    finally:
        sys.setswitchinterval(previous)


def _run(config: PipelineConfig, opts: SuiteOptions, progress: Progress) -> dict:
    cfg = bench_config(config, opts.settings)
    progress(f"pre-rendering {opts.settings.ring} frames for each of {len(cfg.cameras)} camera(s)")
    frames = render_frames(cfg, opts.settings.ring)
    out: dict = {"meta": _meta(cfg, opts), "skipped": {}}
    latencies = {}
    progress("pipeline: warming up")
    result = run_pipeline(cfg, opts.settings, frames, lambda m: progress(f"pipeline: {m}"))
    out["pipeline"], latencies["pipeline"] = report.summarise("pipeline", result, cfg.budget_ms)
    if opts.settings.engine_s > 0:
        out["engine"] = _engine(cfg, opts.settings.engine_s, out["pipeline"], progress)
    if opts.compare:
        _compare(cfg, opts, frames, result.backend, out, latencies, progress)
        out["ratios"] = report.ratios({k: out[k] for k in ("pipeline", "naive", "ultralytics") if k in out})
    if opts.batch_sizes:
        out["batch_sweep"] = batching.sweep(cfg, opts.settings, frames, list(opts.batch_sizes), opts.max_wait_us,
                                            progress)
    _write(out, latencies, opts, progress)
    return out


def _engine(cfg: PipelineConfig, seconds: float, pipeline: dict, progress: Progress) -> dict:
    """The backend alone at the batch sizes the pipeline ran most and at max_batch."""
    used = pipeline.get("batch_sizes") or {}
    common = max(used, key=used.get) if used else "1"
    reference = cfg.model.max_batch
    sizes = sorted({1, int(common), reference})
    result = engine.measure(cfg, sizes, seconds, progress)
    rows = {r["batch"]: r for r in result.get("rows", [])}
    if reference in rows and rows[reference]["fps"]:
        result["reference_batch"] = reference
        result["pipeline_over_engine"] = round(pipeline["fps"] / rows[reference]["fps"], 3)
    return result


def _compare(cfg: PipelineConfig, opts: SuiteOptions, frames: dict, backend_name: str, out: dict,
             latencies: dict, progress: Progress) -> None:
    from pipeline.composition.assembly import open_backend

    backend = open_backend(cfg.model)  # only for the class names every system judges with
    names = backend.class_names
    backend.close()
    loop = SequentialLoop(cfg, frames, names, opts.settings)
    progress("naive loop: warming up")
    result = naive.run_naive(loop, lambda m: progress(f"naive: {m}"))
    out["naive"], latencies["naive"] = report.summarise("naive", result, cfg.budget_ms)
    reason = ultralytics_loop.unavailable()
    if reason:
        out["skipped"]["ultralytics"] = reason
        return
    progress("ultralytics: warming up")
    result = ultralytics_loop.run_ultralytics(loop, lambda m: progress(f"ultralytics: {m}"))
    out["ultralytics"], latencies["ultralytics"] = report.summarise("ultralytics", result, cfg.budget_ms)


def _meta(cfg: PipelineConfig, opts: SuiteOptions) -> dict:
    s, cam, model = opts.settings, cfg.cameras[0], cfg.model
    rate = f"{s.rate_fps:g} fps per camera" if s.rate_fps else "flat out"
    title = (f"{len(cfg.cameras)} x {cam.width}x{cam.height} camera(s), {rate}, {Path(model.path).name} "
             f"@{model.input_size[0]}x{model.input_size[1]}, {model.backend.value}, max_batch {model.max_batch}")
    return {**describe_machine(), "command": opts.command, "config": opts.config_path, "title": title,
            "cameras": len(cfg.cameras), "frame_size": [cam.width, cam.height], "rate_fps_per_camera": s.rate_fps,
            "duration_s": s.duration_s, "warmup_s": s.warmup_s, "ring_frames": s.ring, "budget_ms": cfg.budget_ms,
            "engine_s": s.engine_s, "runtime_switch_interval_ms": cfg.runtime.switch_interval_ms,  # null: auto
            "runtime_cpus": list(cfg.runtime.cpus) if cfg.runtime.cpus is not None else None,  # null: anywhere
            "model": {"path": str(model.path), "input_size": list(model.input_size), "backend": model.backend.value,
                      "max_batch": model.max_batch, "max_wait_us": model.max_wait_us,
                      "cuda_graph": isinstance(model, OnnxRuntimeCudaKeys) and model.cuda_graph},
            **opts.notes}


def _write(out: dict, latencies: dict, opts: SuiteOptions, progress: Progress) -> None:
    if opts.png_path:  # first, so a PNG that cannot be drawn is noted in the JSON
        reason = plot.available()
        if reason:
            out["skipped"]["png"] = reason
        else:
            plot.draw(opts.png_path, out, latencies)
            progress(f"wrote {opts.png_path}")
    if opts.json_path:
        report.write_json(opts.json_path, out)
        progress(f"wrote {opts.json_path}")
