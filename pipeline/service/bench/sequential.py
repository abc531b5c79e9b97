"""The one-thread loop shared by the systems the pipeline is compared with.

Owns the shape of a sequential inspection loop, as a user would write it: take the next
camera's frame, run `process` on it (preprocess, infer, decode: what differs between the
naive loop and Ultralytics), judge it with the same rule book, publish the verdict on a
real ZeroMQ PUB socket, repeat. The cameras are served round robin.

Timing follows the pipeline bench's: flat out, a frame is "captured" when the loop is
ready for it; at a rate, frames fall due on the cameras' fixed schedule whether or not the
loop is ready, and latency counts from the due time. A loop that falls behind takes the
newest frame that is due, as a loop reading a camera with `cv2.VideoCapture` does, and
the frames it skipped are `missed`: with no verdict, the report counts them as
NOT_INSPECTED (that silent loss is the naive loop's real failure mode).
"""

from __future__ import annotations

import time
from typing import Callable

import zmq

from pipeline.config.models import PipelineConfig
from pipeline.core.messages import Detections, Frame, Job, Verdict
from pipeline.parts.publishing.zmq_publisher import ZmqPublisher
from pipeline.parts.rules import RuleBook
from pipeline.parts.sources.frame_source import SourceFrame
from pipeline.service.bench.host import gpu_memory_mib
from pipeline.service.bench.recording import Recorder
from pipeline.service.bench.runner import BenchSettings, Progress, RunResult

Marks = tuple[tuple[str, int], ...]
# a frame image -> its detections in source pixels and the marks of the steps taken
Process = Callable[[object], tuple[Detections, Marks]]


class SequentialLoop:
    def __init__(self, config: PipelineConfig, frames: dict[str, list[SourceFrame]], class_names: tuple[str, ...],
                 settings: BenchSettings):
        self.config = config
        self.frames = frames
        self.cameras = list(frames)
        self.settings = settings
        self.rules = RuleBook(config.rules, class_names)
        self.class_names = class_names
        self.mm_per_px = {c.id: c.mm_per_px for c in config.cameras}
        self.budget_ns = int(config.budget_ms * 1e6)
        rate = settings.rate_fps
        self.period_ns = int(1e9 / (rate * len(self.cameras))) if rate else 0

    def run(self, process: Process, progress: Progress, backend_name: str) -> RunResult:
        context = zmq.Context()
        publisher = ZmqPublisher.from_config(self.config.publisher, context, self.config.budget_ms, self.class_names)
        recorder = Recorder()
        try:
            self._loop(process, publisher, recorder, progress)
            gpu_mib = gpu_memory_mib()  # the whole process's: earlier runs' pools may still count
        finally:
            publisher.close()
            context.term()
        return RunResult(recorder, backend_name, gpu_mib)

    def _loop(self, process: Process, publisher: ZmqPublisher, recorder: Recorder, progress: Progress) -> None:
        start = time.monotonic_ns()
        recorder.start_ns = start + int(self.settings.warmup_s * 1e9)
        recorder.end_ns = recorder.start_ns + int(self.settings.duration_s * 1e9)
        next_note, k = recorder.start_ns + 1_000_000_000, 0
        while (now := time.monotonic_ns()) < recorder.end_ns:
            if self.period_ns:  # behind schedule: skip to the newest frame already due
                k = max(k, (now - start) // self.period_ns)
            due = start + k * self.period_ns if self.period_ns else now
            if due >= recorder.end_ns:
                break
            if due > now:
                time.sleep((due - now) / 1e9)
            self._one(k, due, process, publisher, recorder)
            k += 1
            if now >= next_note:
                next_note += 1_000_000_000
                progress(f"{len(recorder.records)} verdicts recorded, {(recorder.end_ns - now) / 1e9:.0f} s left")
        if self.period_ns:  # frames that fell due in the window but got no verdict
            first, end = (-(-(t - start) // self.period_ns) for t in (recorder.start_ns, recorder.end_ns))
            recorder.missed = max(0, end - first - len(recorder.records))

    def _one(self, k: int, due_ns: int, process: Process, publisher: ZmqPublisher, recorder: Recorder) -> None:
        camera = self.cameras[k % len(self.cameras)]
        ring = self.frames[camera]
        source = ring[(k // len(self.cameras)) % len(ring)]
        picked_up = time.monotonic_ns()
        detections, marks = process(source.image)
        verdict = self.rules.judge(detections, self.mm_per_px.get(camera))
        decided = time.monotonic_ns()
        if decided - due_ns > self.budget_ns:
            verdict = Verdict(verdict.outcome, verdict.reasons, late=True)
        frame = Frame(camera, k // len(self.cameras), source.image, due_ns, time.time_ns())  # its lag is 'capture'
        job = Job(frame, (("capture", picked_up), *marks, ("decide", decided)), detections=detections, verdict=verdict)
        published_ns = time.monotonic_ns()  # one reading: the message's latency_ms.total and the record
        publisher.publish_verdict(job, t_mono_ns=published_ns)
        recorder.record(job, published_ns)
