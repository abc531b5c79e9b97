"""Server-side batching across clients against local batching (figures for
docs/SCALING.md); prints one JSON object.

    python3 tools/measure_triton_batching.py [--calls 100] [--clients 2 4] [--delays-us 0 2000 8000]

Starts the bundled server (tests/triton_server.py) with the demo exported once per
dynamic-batcher delay. Each of N client threads (N pipelines sending batch 1) holds its
own TritonBackend and calls it back to back; the server's Prometheus counters give the
mean batch it formed (nv_inference_count / nv_inference_exec_count). For comparison one
client sends batches of N (a pipeline batching N cameras locally). p50/p99 per call, ms.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import threading
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tools.triton_measurement import percentiles, result_head, started_server, time_calls  # noqa: E402

from pipeline.config.model import TritonModelConfig  # noqa: E402
from pipeline.parts.backends import create_backend  # noqa: E402
from tests.triton_server import TritonServer, export_python_repository  # noqa: E402


def backend(server: TritonServer, name: str, max_batch: int):
    return create_backend(TritonModelConfig(input_size=416,
                                            max_batch=max_batch, triton={"url": server.grpc_url, "model_name": name}))


def calls(b, batch: int, n: int, out: list[float]) -> None:
    tensors = [np.random.default_rng(1).random((3, 416, 416), dtype=np.float32)] * batch
    time_calls(lambda: b.infer_tensors(tensors), n, out)


def counters(server: TritonServer, name: str) -> tuple[int, int]:
    text = server.metrics()
    get = lambda m: int(re.search(rf'^{m}{{model="{name}",version="1"}} (\d+)', text, re.M).group(1))  # noqa: E731
    return get("nv_inference_count"), get("nv_inference_exec_count")


def shared(server: TritonServer, name: str, clients: int, n: int) -> dict:
    backends = [backend(server, name, 1) for _ in range(clients)]
    for b in backends:
        b.warmup(3)
    before, samples = counters(server, name), []
    threads = [threading.Thread(target=calls, args=(b, 1, n, samples)) for b in backends]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    after = counters(server, name)
    for b in backends:
        b.close()
    return {"mean_server_batch": round((after[0] - before[0]) / max(1, after[1] - before[1]), 2), **percentiles(samples)}


def local(server: TritonServer, name: str, batch: int, n: int) -> dict:
    b = backend(server, name, batch)
    b.warmup(3)
    samples: list[float] = []
    calls(b, batch, n, samples)
    b.close()
    return percentiles(samples)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--calls", type=int, default=100)
    p.add_argument("--clients", type=int, nargs="+", default=[2, 4])
    p.add_argument("--delays-us", type=int, nargs="+", default=[0, 2000, 8000])
    args = p.parse_args()
    repo = Path(tempfile.mkdtemp(prefix="triton-batching-"))
    for delay in args.delays_us:
        export_python_repository(repo, ROOT / "engines" / "demo.onnx", max_batch=8, delay_us=delay, name=f"d{delay}")
    server = started_server(repo, repo / "tritonserver.log")
    result: dict = {**result_head(), "server_batching": {}, "local_batching": {}}
    try:
        for delay in args.delays_us:
            for clients in args.clients:
                result["server_batching"][f"delay {delay} us, {clients} clients x batch 1"] = \
                    shared(server, f"d{delay}", clients, args.calls)
        for clients in args.clients:
            result["local_batching"][f"1 client x batch {clients}"] = local(server, "d0", clients, args.calls)
    finally:
        server.stop()
    result["load_1min_after"] = os.getloadavg()[0]
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
