"""Runs the real pipeline for the bench: N cloned cameras, pre-rendered frames, a recorder.

Owns turning the user's config into the bench's config and one timed run. The config:
the first camera cloned `cameras` times with distinct ids and seeds, a private publisher
endpoint, no waiting for subscribers; at a rate the config's queue and late policies
apply unchanged; flat out every queue back-pressures instead of shedding and late frames
are still inferred (`late_policy: report`), so the run measures capacity rather than the
shedding policy. The run, through the run driver (pipeline.composition.driver) with the pre-rendered
sources and the recorder as its substitutions: warm-up, a recording window, the
ordinary bounded shutdown. Frames enter through the real capture stage and the sources'
slot path (the pre-rendered source writes into the pipeline's frame slots, see `frames`);
the batches come from the infer stage's own count in telemetry.
Everything else (backend, GPU or CPU preprocessing, batching, rules, the ZeroMQ
publisher) is exactly what `pipeline run` builds from the same config; the bench's
recorder is one more verdict sink.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

from pipeline.composition.app import StartupError
from pipeline.composition.driver import RunDriver, StopReason, Substitutions, Until
from pipeline.config.models import LatePolicy, Overflow, PipelineConfig
from pipeline.core.contracts import FrameSource
from pipeline.parts.sources import create_source
from pipeline.parts.sources.frame_source import SourceError, SourceFrame
from pipeline.service.bench.first_parts import FirstParts
from pipeline.service.bench.frames import PrerenderedSource, prerender
from pipeline.service.bench.host import gpu_memory_mib
from pipeline.service.bench.recording import Recorder

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
    recorder, first = Recorder(), FirstParts()
    # every camera replays its pre-rendered ring; the configured sources are never opened
    # (a 1080p synthetic source costs ~0.5 s to set up)
    substitutions = Substitutions(sources=_replayers(frames, settings), sinks=(recorder, first))
    driver = RunDriver(config, substitutions=substitutions)
    driver.open()
    try:
        driver.start()
        if driver.run(Until(duration_s=settings.warmup_s)) is StopReason.DURATION:
            recorder.open_window(settings.duration_s)
            driver.run(Until(duration_s=settings.duration_s), tick=_notes(recorder, settings, progress))
        progress(first.summary(config.budget_ms))
        gpu_mib = gpu_memory_mib()
    finally:
        code = driver.stop()
    telemetry = driver.pipeline.telemetry
    if code or telemetry.crashed.is_set():
        raise StartupError("the pipeline crashed during the bench: " + "; ".join(telemetry.errors))
    drops = {name: q.drops for name, q in telemetry.queues.items()}
    return RunResult(recorder, telemetry.backend, gpu_mib, drops, dict(telemetry.batches))


def _replayers(frames: dict[str, list[SourceFrame]], settings: BenchSettings) -> dict[str, FrameSource]:
    period_s = 1.0 / settings.rate_fps if settings.rate_fps else 0.0
    # cameras are not in phase: spread their due times over one frame period
    return {camera_id: PrerenderedSource(ring, settings.rate_fps, i * period_s / len(frames))
            for i, (camera_id, ring) in enumerate(frames.items())}


def _notes(recorder: Recorder, settings: BenchSettings, progress: Progress):
    """A tick that says, once a second, how the recording goes."""
    end = time.monotonic() + settings.duration_s
    next_note = time.monotonic() + 1.0

    def tick() -> None:
        nonlocal next_note
        if time.monotonic() >= next_note:
            next_note += 1.0
            left = max(0.0, end - time.monotonic())
            progress(f"{len(recorder.records)} verdicts recorded, {left:.0f} s left")

    return tick
