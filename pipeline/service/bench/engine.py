"""The backend alone, in the same run as the pipeline: what the engine can do by itself.

Owns the side-by-side reference that makes "pipeline / engine" a measured ratio: the same
model config opened by the same `open_backend` the pipeline uses, warmed up the same way
(CUDA graphs captured), then run back to back on inputs that are already where the
backend reads them (device buffers for a GPU-resident backend, host arrays otherwise),
at each batch size the pipeline used, for a fixed time. No preprocessing, no decode, no
threads: only the backend's own calls, each timed.
"""

from __future__ import annotations

import time

import numpy as np

from pipeline.composition.app import StartupError
from pipeline.composition.assembly import open_backend
from pipeline.config.models import PipelineConfig
from pipeline.service.bench.report import latency_stats
from pipeline.stages.infer import ThreadWarmed


def measure(config: PipelineConfig, sizes: list[int], seconds: float, progress) -> dict:
    """{"backend", "rows": [{batch, fps, p50_ms, p99_ms, ...}]} or {"error"}."""
    try:
        backend = open_backend(config.model)
    except StartupError as exc:
        return {"error": str(exc)}
    try:
        backend.warmup(config.model.warmup_runs)
        if isinstance(backend, ThreadWarmed):
            backend.warmup_thread()  # graphs captured here, on the thread that times them
        rows = []
        for n in sizes:
            progress(f"backend alone: batch {n} for {seconds:g} s")
            rows.append(_one_size(backend, n, seconds))
        return {"backend": backend.name, "rows": rows}
    finally:
        backend.close()


def _one_size(backend, n: int, seconds: float) -> dict:
    inputs, free = _inputs(backend, n)
    try:
        times = []
        end = time.monotonic() + seconds
        started = time.monotonic()
        while time.monotonic() < end:
            t0 = time.perf_counter_ns()
            backend.infer_tensors(inputs)
            times.append((time.perf_counter_ns() - t0) / 1e6)
        elapsed = time.monotonic() - started
    finally:
        free()
    stats = latency_stats(np.asarray(times, np.float64))
    return {"batch": n, "fps": round(n * len(times) / elapsed, 1), "runs": len(times), **stats}


def _inputs(backend, n: int):
    """n model inputs where the backend reads them, and how to free them."""
    w, h = backend.input_size
    if not backend.accepts_device_input:
        return [np.zeros((3, h, w), backend.input_dtype) for _ in range(n)], lambda: None
    from pipeline.parts.gpu.device_buffers import DeviceTensor  # a GPU backend: pycuda is there

    with backend.device.active():
        tensors = [DeviceTensor.allocate((3, h, w), backend.input_dtype) for _ in range(n)]

    def free() -> None:
        with backend.device.active():
            for tensor in tensors:
                tensor.free()

    return tensors, free
