"""Runs the real pipeline for the bench: N cloned cameras, pre-rendered frames, a tap.

Owns turning the user's config into the bench's config and one timed run. The config:
the first camera cloned `cameras` times with distinct ids and seeds, a private publisher
endpoint, no waiting for subscribers; at a rate the config's queue and late policies
apply unchanged; flat out every queue back-pressures instead of shedding and late frames
are still inferred (`late_policy: report`), so the run measures capacity rather than the
shedding policy. The run: warm-up, a recording window, the ordinary bounded shutdown.
Frames enter through the real capture stage and the sources' slot path (the
pre-rendered source writes into the pipeline's frame slots, see `frames`).
Everything else (backend, GPU or CPU preprocessing, batching, rules, the ZeroMQ
publisher) is exactly what `pipeline run` builds from the same config.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import Callable

from pipeline.app import Pipeline, StartupError
from pipeline.assembly import build_parts
from pipeline.bench.first_parts import FirstParts
from pipeline.bench.frames import PrerenderedSource, prerender
from pipeline.bench.host import gpu_memory_mib
from pipeline.bench.recording import Recorder, TapPublisher
from pipeline.config.models import LatePolicy, Overflow, PipelineConfig
from pipeline.sources import create_source
from pipeline.sources.base import SourceError, SourceFrame

Progress = Callable[[str], None]
FLAT_OUT_BLOCK_MS = 2000  # flat out, a full queue makes its producer wait this long before shedding


@dataclass(frozen=True)
class BenchSettings:
    duration_s: float = 10.0
    warmup_s: float = 2.0
    cameras: int = 1
    rate_fps: float | None = None  # per camera; None: flat out
    ring: int = 8  # pre-rendered frames per camera
    endpoint: str = "tcp://127.0.0.1:*"
    engine_s: float = 2.0  # seconds of the backend alone per batch size; 0: not measured


@dataclass
class RunResult:
    """One measured run of any system: its records plus what only it can tell."""

    recorder: Recorder
    backend: str = ""
    gpu_memory_mib: float | None = None
    queue_drops: dict[str, int] | None = None
    batches: dict[tuple[int, int], int] | None = None  # (size, distinct cameras) -> count


def bench_config(config: PipelineConfig, settings: BenchSettings) -> PipelineConfig:
    """The config the bench runs: cameras cloned, private endpoint, queue policy."""
    data = config.model_dump()
    first = data["cameras"][0]
    data["cameras"] = [_clone(first, i, settings.cameras) for i in range(settings.cameras)]
    data["publisher"].update(endpoint=settings.endpoint, await_subscriber_ms=0)
    if settings.rate_fps is None:  # capacity: nothing shed, nothing skipped as expired
        for name in ("preprocess", "infer", "decide"):
            data["queues"][name].update(overflow=Overflow.BLOCK, block_timeout_ms=FLAT_OUT_BLOCK_MS)
        data["late_policy"] = LatePolicy.REPORT
    return PipelineConfig.model_validate(data)


def model_variant(config: PipelineConfig, **changes) -> PipelineConfig:
    """`config` with some `model` keys changed, validated like the YAML would be; the infer
    queue grows where a larger `max_batch` needs it (it could never fill otherwise)."""
    data = config.model_dump()
    data["model"].update(changes)
    infer_queue = data["queues"]["infer"]
    infer_queue["size"] = max(infer_queue["size"], data["model"]["max_batch"] - 1)
    return PipelineConfig.model_validate(data)


def _clone(camera: dict, index: int, count: int) -> dict:
    clone = {**camera, "trigger_endpoint": None}
    if count > 1:
        clone["id"] = f"{camera['id']}-{index}"
    source = dict(camera["source"])
    if source["kind"] == "synthetic":
        source["seed"] = source["seed"] + index
    clone["source"] = source
    return clone


def render_frames(config: PipelineConfig, ring: int) -> dict[str, list[SourceFrame]]:
    """`ring` frames per camera of `config`, from each camera's own configured source."""
    frames = {}
    for camera in config.cameras:
        try:
            source = create_source(camera)
            source.open()
        except (SourceError, ValueError, OSError) as exc:
            raise StartupError(f"camera {camera.id}: {exc}") from None
        try:
            frames[camera.id] = prerender(source, ring)
        except (SourceError, ValueError) as exc:
            raise StartupError(f"camera {camera.id}: cannot pre-render frames: {exc}") from None
        finally:
            source.close()
    return frames


def run_pipeline(config: PipelineConfig, settings: BenchSettings, frames: dict[str, list[SourceFrame]],
                 progress: Progress) -> RunResult:
    """Warm up, record for `duration_s`, shut down; the records of the window."""
    # build_parts opens only the first camera's source (a 1080p synthetic source costs
    # ~0.5 s to set up); every camera then replays its pre-rendered ring.
    parts = build_parts(config.model_copy(update={"cameras": config.cameras[:1]}))
    for source in parts.sources.values():
        source.close()
    stop = threading.Event()
    parts.sources = _replayers(frames, settings, stop)
    recorder = Recorder()
    parts.publisher = TapPublisher(parts.publisher, recorder)
    pipeline = Pipeline(config, parts)
    batches = _count_batches(pipeline)
    first = FirstParts()
    pipeline.telemetry.verdict_listeners.append(first)
    pipeline.start()
    try:
        _timed_window(pipeline, recorder, settings, progress)
        progress(first.summary(config.budget_ms))
        gpu_mib = gpu_memory_mib()
    finally:
        stop.set()
        code = pipeline.shutdown()
    if code or pipeline.telemetry.crashed.is_set():
        raise StartupError("the pipeline crashed during the bench: " + "; ".join(pipeline.telemetry.errors))
    drops = {name: q.drops for name, q in pipeline.telemetry.queues.items()}
    return RunResult(recorder, parts.backend.name, gpu_mib, drops, dict(batches))


def _replayers(frames: dict[str, list[SourceFrame]], settings: BenchSettings, stop: threading.Event) -> dict:
    period_s = 1.0 / settings.rate_fps if settings.rate_fps else 0.0
    # cameras are not in phase: spread their due times over one frame period
    return {camera_id: PrerenderedSource(ring, settings.rate_fps, i * period_s / len(frames), stop)
            for i, (camera_id, ring) in enumerate(frames.items())}


def _count_batches(pipeline: Pipeline) -> Counter:
    """Counts the batches the infer stage handled as (size, distinct cameras) pairs, by
    wrapping its `handle`: the proof that dynamic batching gathers across cameras."""
    infer = next(s for s in pipeline.stages if s.name == "infer")
    counts: Counter[tuple[int, int]] = Counter()
    handle = infer.handle

    def counted(jobs):
        counts[len(jobs), len({job.frame.camera_id for job in jobs})] += 1
        return handle(jobs)

    infer.handle = counted  # an instance attribute: the base loop's `self.handle` finds it first
    return counts


def _timed_window(pipeline: Pipeline, recorder: Recorder, settings: BenchSettings, progress: Progress) -> None:
    end_warmup = time.monotonic() + settings.warmup_s
    while _alive(pipeline) and time.monotonic() < end_warmup:
        pipeline.telemetry.crashed.wait(0.05)
    recorder.open_window(settings.duration_s)
    end = time.monotonic() + settings.duration_s
    next_note = time.monotonic() + 1.0
    while _alive(pipeline) and time.monotonic() < end:
        pipeline.telemetry.crashed.wait(0.05)
        if time.monotonic() >= next_note:
            next_note += 1.0
            left = max(0.0, end - time.monotonic())
            progress(f"{len(recorder.records)} verdicts recorded, {left:.0f} s left")


def _alive(pipeline: Pipeline) -> bool:
    return not pipeline.captures_done and not pipeline.telemetry.crashed.is_set()
