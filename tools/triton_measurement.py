"""What the measure_triton_* tools share: the bundled Triton server (tests/triton_server.py)
started on a model repository, wall time of back-to-back calls and its p50/p99, and the
head of the one JSON object each tool prints (when, on what, how loaded).

Imported by the tools once they have put the repository on sys.path.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from tests.triton_server import TritonServer, triton_env


def started_server(repo: Path, log: Path) -> TritonServer:
    """The bundled server serving `repo`, ready; its log goes to `log`."""
    server = TritonServer(triton_env(), repo, log)
    server.start()
    return server


def time_calls(call: Callable[[], object], n: int, out: list[float]) -> None:
    """`call` `n` times back to back, appending each call's wall time in ms to `out`
    (a list several client threads may share)."""
    for _ in range(n):
        start = time.perf_counter()
        call()
        out.append((time.perf_counter() - start) * 1e3)


def percentiles(samples: list[float]) -> dict[str, float]:
    return {"p50_ms": round(float(np.percentile(samples, 50)), 2), "p99_ms": round(float(np.percentile(samples, 99)), 2)}


def result_head() -> dict:
    """When and on what the figures were taken, and the load before: the head of a result."""
    return {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": platform.node(),
            "cpus": os.cpu_count(), "load_1min": os.getloadavg()[0]}
