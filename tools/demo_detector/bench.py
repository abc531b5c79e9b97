"""CPU latency of an exported model, measured the way the embedded default runs it:
ONNX Runtime's CPU provider, `threads` intra-op threads, batch 1, one frame at a time.

Owns the numbers in engines/demo.md. Warm-up runs are discarded; p50/p90/p99 come from
`runs` timed calls on a fixed random input (the model's cost does not depend on pixels).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np


def measure_latency(path: Path, size: int, threads: int = 2, runs: int = 1000, warmup: int = 50) -> dict:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).random((1, 3, size, size), dtype=np.float32)
    for _ in range(warmup):
        session.run(None, {"images": x})
    times_ms = np.empty(runs)
    for i in range(runs):
        t0 = time.perf_counter()
        session.run(None, {"images": x})
        times_ms[i] = (time.perf_counter() - t0) * 1e3
    p50, p90, p99 = (round(float(v), 2) for v in np.percentile(times_ms, [50, 90, 99]))
    return {"threads": threads, "runs": runs, "p50_ms": p50, "p90_ms": p90, "p99_ms": p99,
            "onnxruntime": ort.__version__}
