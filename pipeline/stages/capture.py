"""Capture: one thread per camera, turning source frames into jobs.

Owns the per-camera frame counter (`frame_id`, contiguous from 0), the capture
timestamps, the camera state (CONNECTING/STREAMING/STALLED/DOWN/ENDED) and the first
check of every image. A frame the source knows it lost, or an unusable image, still
becomes a job, settled as ERROR (`bad_frame`), so it gets its verdict like any other.
Stops when the stop event is set, after `max_frames`, or at the end of a replay; then
sends EndOfStream downstream.
"""

from __future__ import annotations

import logging
import threading
import time

import numpy as np

from pipeline.messages import EndOfStream, Frame, Job, Outcome, ReasonCode
from pipeline.queues import StageQueue
from pipeline.sources.base import CameraState, FrameSource, SourceEnded, SourceError, SourceFrame
from pipeline.telemetry import Telemetry

log = logging.getLogger(__name__)

READ_TIMEOUT_S = 0.05
ERROR_BACKOFF_S = 0.1


class CaptureStage:
    def __init__(self, camera_id: str, source: FrameSource, outbox: StageQueue, telemetry: Telemetry,
                 stop: threading.Event, max_frames: int | None = None, stall_timeout_s: float = 2.0):
        self.camera_id = camera_id
        self.name = f"capture.{camera_id}"
        self.source = source
        self.outbox = outbox
        self.stop = stop
        self.max_frames = max_frames
        self.stall_timeout_ns = int(stall_timeout_s * 1e9)
        self.camera = telemetry.cameras[camera_id]
        self.stats = telemetry.stage(self.name)
        self.telemetry = telemetry
        self.thread = threading.Thread(target=self.run, name=self.name, daemon=True)
        self._next_id = 0

    def start(self) -> None:
        self.thread.start()

    def run(self) -> None:
        self.stats.state = "running"
        self.camera.last_frame_ns = time.monotonic_ns()
        try:
            while not self.stop.is_set() and not self._reached_limit():
                self._capture_once()
            self.stats.state = "stopped"
        except SourceEnded:
            self._set_state(CameraState.ENDED)
            self.stats.state = "stopped"
        except BaseException as exc:
            log.exception("capture of camera %s crashed", self.camera_id)
            self.telemetry.record_crash(self.name, exc)
        finally:
            self._close_source()
            self.outbox.put(EndOfStream(self.name))

    def _reached_limit(self) -> bool:
        return self.max_frames is not None and self._next_id >= self.max_frames

    def _capture_once(self) -> None:
        self.stats.progressed()  # each pass is progress, frame or not: a hung read() is not
        try:
            got = self.source.read(READ_TIMEOUT_S)
        except SourceError as exc:
            self._on_source_error(exc)
            return
        now = time.monotonic_ns()
        if got is None:
            if now - self.camera.last_frame_ns > self.stall_timeout_ns and self.camera.state == CameraState.STREAMING.value:
                self._set_state(CameraState.STALLED)
            return
        self.camera.last_frame_ns = now
        self._set_state(CameraState.STREAMING)
        self.outbox.put(self._job(got, now))

    def _job(self, got: SourceFrame, t_capture_ns: int) -> Job:
        frame = Frame(self.camera_id, self._take_id(), got.image, t_capture_ns, time.time_ns(),
                      part_id=got.part_id, camera_ts_ns=got.camera_ts_ns, truth=got.truth)
        job = Job(frame).mark("capture")
        problem = image_problem(got.image)
        return job.settle(Outcome.ERROR, ReasonCode.BAD_FRAME, problem, "capture") if problem else job

    def _take_id(self) -> int:
        frame_id = self._next_id
        self._next_id += 1
        self.camera.frames_captured = self._next_id
        self.stats.processed = self._next_id
        self.stats.progressed()
        return frame_id

    def _on_source_error(self, exc: SourceError) -> None:
        if getattr(exc, "frame_lost", False):
            # The source knows a frame existed but cannot deliver it: it still gets a verdict.
            now = time.monotonic_ns()
            frame = Frame(self.camera_id, self._take_id(), None, now, time.time_ns(), part_id=getattr(exc, "part_id", None))
            self.outbox.put(Job(frame).settle(Outcome.ERROR, ReasonCode.BAD_FRAME, str(exc)[:300], "capture"))
            return
        if self.camera.state != CameraState.DOWN.value:
            log.warning("camera %s is down: %s", self.camera_id, exc)
        self._set_state(CameraState.DOWN)
        self.stop.wait(ERROR_BACKOFF_S)

    def _set_state(self, state: CameraState) -> None:
        if self.camera.state != state.value:
            if state in (CameraState.STALLED, CameraState.DOWN) or self.camera.state in ("STALLED", "DOWN"):
                log.warning("camera %s: %s -> %s", self.camera_id, self.camera.state, state.value)
            self.camera.state = state.value

    def _close_source(self) -> None:
        try:
            self.source.close()
        except Exception:  # noqa: BLE001 - closing must not hide the real outcome
            log.exception("closing the source of camera %s failed", self.camera_id)


def image_problem(image: object) -> str:
    """Why `image` cannot be inspected, or "" when it is a usable uint8 gray/BGR image."""
    if not isinstance(image, np.ndarray):
        return f"source returned {type(image).__name__} instead of an image"
    if image.dtype != np.uint8:
        return f"image dtype {image.dtype}, expected uint8"
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] != 3):
        return f"image shape {image.shape}, expected HxW or HxWx3"
    if image.shape[0] < 2 or image.shape[1] < 2:
        return f"image shape {image.shape} is empty"
    return ""
