"""The soak's run: the real pipeline through the run driver, sampled on its tick.

Owns sampling the daemon's own process (RSS, open file descriptors, OS threads, from
/proc, so Linux only) and what an independent subscriber sees (end-to-end latency per
interval, verdicts per second, sequence gaps). What crosses the boundary: a
`PipelineConfig` and timings come in; the samples and their `SoakReport`
(pipeline.service.soak.judgement) go out. The pipeline under test is the real one,
built and run by the run driver (pipeline.composition.driver) until the duration, the
stop event, a crash or the end of every source; the subscriber is an ordinary SUB socket
on its own thread, so CURVE configs are not supported here; its latency is the wire's
`latency_ms.total`, the figure every other report uses. Memory held per sample is a few
numbers, never per-frame data, so the soak itself does not grow the RSS it measures.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Callable

import numpy as np
import zmq

from pipeline.composition.driver import RunDriver, StopReason, Until
from pipeline.config.models import PipelineConfig
from pipeline.core.protocol import ProtocolError, decode
from pipeline.service.soak.judgement import MIN_JUDGED_S, Sample, SoakReport, analyse


def process_sample() -> tuple[float, int, int]:
    """(resident MB, open fds, OS threads) of this process."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    threads = next(int(line.split()[1]) for line in Path("/proc/self/status").read_text().splitlines()
                   if line.startswith("Threads:"))
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20, len(os.listdir("/proc/self/fd")), threads


class Listener:
    """An independent subscriber: latency of each verdict, and seq gaps per camera."""

    def __init__(self, endpoint: str):
        self._context = zmq.Context()
        self._sock = self._context.socket(zmq.SUB)
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.setsockopt(zmq.RCVTIMEO, 100)
        self._sock.setsockopt(zmq.SUBSCRIBE, b"")
        self._sock.connect(endpoint)
        self._lock = threading.Lock()
        self._latencies: list[float] = []  # since the last `take`; bounded by one interval
        self._next_seq: dict[str, int] = {}
        self.verdicts = 0
        self.gaps = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="soak-listener", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                _, payload = self._sock.recv_multipart()
                msg = decode(payload)
            except (zmq.Again, ValueError, ProtocolError):
                continue
            if msg["type"] == "verdict":
                self._verdict(msg)

    def _verdict(self, msg: dict) -> None:
        camera, seq = msg["camera_id"], msg["seq"]
        with self._lock:
            expected = self._next_seq.get(camera, seq)
            self.gaps += seq != expected
            self._next_seq[camera] = seq + 1
            self.verdicts += 1
            self._latencies.append(msg["latency_ms"]["total"])

    def take(self) -> list[float]:
        with self._lock:
            taken, self._latencies = self._latencies, []
        return taken

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self._sock.close()
        self._context.term()


def run_soak(config: PipelineConfig, duration_s: float, interval_s: float, warmup_s: float,
             progress: Callable[[Sample], None] | None = None,
             stop: threading.Event | None = None, min_judged_s: float = MIN_JUDGED_S) -> tuple[list[Sample], SoakReport]:
    """Run the pipeline for `duration_s`, sampling every `interval_s`; early stop on `stop`."""
    stop = stop or threading.Event()
    listener = Listener(config.publisher.endpoint)
    driver = RunDriver(config)
    sampler = Sampler(listener, interval_s, progress)
    try:
        if driver.open(interrupted=stop.is_set) is not None:
            try:
                driver.start()
                sampler.begin()
                if driver.run(Until(duration_s, signal=stop.is_set), tick=sampler.tick) is StopReason.DURATION:
                    sampler.finish(duration_s)
            finally:
                driver.stop()
    finally:
        listener.close()
    return sampler.samples, analyse(sampler.samples, warmup_s, min_judged_s)


class Sampler:
    """Takes a `Sample` every `interval_s` from `begin`, on the driver's tick."""

    def __init__(self, listener: Listener, interval_s: float, progress: Callable[[Sample], None] | None):
        self.listener = listener
        self.interval_s = interval_s
        self.progress = progress
        self.samples: list[Sample] = []
        self._start = self._due = self._last = 0.0

    def begin(self) -> None:
        self._start = self._last = time.monotonic()
        self._due = self._start + self.interval_s

    def tick(self) -> None:
        if time.monotonic() >= self._due:
            self._due += self.interval_s
            self.take()

    def finish(self, duration_s: float) -> None:
        """The last sample, at the end of the duration (unless the last tick just took it)."""
        if not self.samples or self.samples[-1].t_s < duration_s:
            self.take()

    def take(self) -> None:
        now = time.monotonic()
        self.samples.append(_sample(now - self._start, self.listener, max(now - self._last, 1e-3)))
        self._last = now
        if self.progress is not None:
            self.progress(self.samples[-1])


def _sample(t_s: float, listener: Listener, interval_s: float) -> Sample:
    rss, fds, threads = process_sample()
    latencies = listener.take()
    p50, p99 = np.percentile(latencies, (50, 99)) if latencies else (float("nan"), float("nan"))
    return Sample(round(t_s, 2), round(rss, 2), fds, threads, round(float(p50), 3), round(float(p99), 3),
                  round(len(latencies) / interval_s, 2), listener.verdicts, listener.gaps)
