"""Where the pipeline's own threads run: `runtime.cpus`, the CPUs that the capture and
stage threads are confined to (null: wherever the operating system puts them).

Why: every frame is handed from thread to thread four times (capture, preprocess,
infer, decide, publish), and a hand-on to a thread that sleeps on another, idle CPU
waits for that CPU to wake up. On the GPU lab's virtual machine that wake-up takes
0.07 ms typically and 0.3 ms at the 99th percentile, each time; with the threads on one
CPU, the woken thread runs where its waker just ran and the wait drops to 0.05 / 0.1 ms
(1 camera @ 300 fps on a quiet H200 lab machine: p99 2.24-2.31 ms against 2.29-5.38,
docs/BENCHMARKS.md). The interpreter lock runs one of these threads at a time anyway;
what a shared CPU costs is the work done outside the lock (image copies, the GPU
driver's waits), so it suits a lone fast camera, not eight.

How: Linux gives a new thread its creator's CPU mask, so the driver sets the calling
thread's mask, starts the stages and the captures inside `threads_started_on` (threads
they start later inherit it too), and takes its own mask back. Threads started before
(ONNX Runtime's, ZeroMQ's I/O thread, the HTTP server) keep theirs.
"""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from typing import Iterator

from pipeline.composition.app import StartupError


def checked_cpus(cpus: tuple[int, ...] | None) -> frozenset[int] | None:
    """`runtime.cpus` as a set (None: not confined), or StartupError naming the CPUs
    this process may run on."""
    if cpus is None:
        return None
    if not sys.platform.startswith("linux"):
        raise StartupError(f"runtime.cpus {list(cpus)}: confining threads to CPUs needs Linux; "
                           f"leave runtime.cpus out on {sys.platform}")
    allowed = os.sched_getaffinity(0)
    outside = sorted(set(cpus) - allowed)
    if outside:
        raise StartupError(f"runtime.cpus {list(cpus)}: CPU {', '.join(map(str, outside))} is not one this "
                           f"process may run on (it may use {spans(allowed)})")
    return frozenset(cpus)


@contextmanager
def threads_started_on(cpus: frozenset[int] | None) -> Iterator[None]:
    """Threads started inside the block run on `cpus` (None: as they would anyway)."""
    if cpus is None:
        yield
        return
    own = os.sched_getaffinity(0)  # Linux: 0 is the calling thread, not every thread of the process
    os.sched_setaffinity(0, cpus)
    try:
        yield
    finally:
        os.sched_setaffinity(0, own)


def spans(cpus: set[int] | frozenset[int]) -> str:
    """{0, 1, 2, 5} -> '0-2, 5'."""
    spans: list[list[int]] = []
    for cpu in sorted(cpus):
        if spans and cpu == spans[-1][1] + 1:
            spans[-1][1] = cpu
        else:
            spans.append([cpu, cpu])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in spans)
