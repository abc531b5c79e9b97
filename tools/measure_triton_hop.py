"""Measures what the hop to a Triton server costs against in-process ONNX Runtime
(figures for docs/SCALING.md) and prints one JSON object.

    python3 tools/measure_triton_hop.py MODEL.onnx GRPC_HOST:PORT HTTP_HOST:PORT MODEL_NAME [--runs N]

The server must serve MODEL.onnx as MODEL_NAME (e.g. `pipeline export-triton MODEL.onnx
REPO --platform python`, then tritonserver on that repository; tests/triton_server.py
starts one). Each variant runs the pipeline's own backend (`create_backend`) on random
input for batch 1 and 4: in-process ONNX Runtime, Triton gRPC with system shared memory,
gRPC with plain tensors, HTTP with shared memory, HTTP with plain tensors. p50/p99 of
wall time per call, in ms, after warm-up.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tools.triton_measurement import percentiles, result_head, time_calls  # noqa: E402

from pipeline.config.model import model_config  # noqa: E402
from pipeline.parts.backends import create_backend  # noqa: E402


def timed(backend, batch: int, runs: int) -> dict[str, float]:
    w, h = backend.input_size
    tensors = list(np.random.default_rng(0).random((batch, 3, h, w), dtype=np.float32))
    for _ in range(5):
        backend.infer_tensors(tensors)
    samples: list[float] = []
    time_calls(lambda: backend.infer_tensors(tensors), runs, samples)
    return percentiles(samples)


def variants(args) -> dict[str, dict]:
    base = {"path": args.model, "input_size": 416, "max_batch": 4, "threads": 1}
    remote = {"path": args.model, "input_size": 416, "max_batch": 4, "backend": "triton"}
    out = {"onnxruntime in-process": base}
    for protocol, url in (("grpc", args.grpc), ("http", args.http)):
        for shm in ("system", "none"):
            out[f"triton {protocol} {'shm' if shm == 'system' else 'tensors'}"] = {
                **remote, "triton": {"url": url, "protocol": protocol, "model_name": args.name, "shared_memory": shm}}
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("model")
    p.add_argument("grpc")
    p.add_argument("http")
    p.add_argument("name")
    p.add_argument("--runs", type=int, default=200)
    args = p.parse_args()
    result: dict = {**result_head(), "variants": {}}
    for label, cfg in variants(args).items():
        backend = create_backend(model_config(**cfg))
        try:
            result["variants"][label] = {f"batch {b}": timed(backend, b, args.runs) for b in (1, 4)}
        finally:
            backend.close()
    result["load_1min_after"] = os.getloadavg()[0]
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
