"""Capture: one thread per camera, turning source frames into jobs.

Owns the per-camera frame counter (`frame_id`, contiguous from 0), the capture
timestamps, the camera state (CONNECTING/STREAMING/STALLED/DOWN/ENDED) and the first
check of every image. A frame the source knows it lost, or an unusable image, still
becomes a job, settled as ERROR (`bad_frame`), so it gets its verdict like any other.
Stops when the stop event is set, after `max_frames`, or at the end of a replay; then
sends EndOfStream downstream.

Part ids: with a trigger inbox (pipeline.parts.sources.triggers), each frame claims the oldest
part the PLC announced before it; a free-running camera's frames that no part claims
are skipped (counted, not inspected: they show no announced part). An announced part
with no frame within `trigger_timeout_s` still gets its verdict, NOT_INSPECTED with
reason `missed_trigger` (camera streaming) or `source_down` (camera down or stalled),
and parts still waiting at shutdown get `shutdown`. Without an inbox, the source's own
part id (e.g. a camera frame counter) is used.

Frame slots: given a `FramePool` and a `SlotSource`, each frame is read into a buffer
lent from the pool (`Job.frame_slot`, released downstream once the image has been read;
see pipeline.core.buffers), so the hot path neither allocates nor copies the frame again.
When every slot is in flight (the pipeline is backed up) or the source cannot use the
slot, the frame comes in an array of its own, exactly as without a pool. A source whose
`read_into` would only copy an image it decoded elsewhere (image files) is lent slots
only when they are page-locked (the GPU path): on the CPU path that copy buys nothing.

Camera state: a `CameraSource` reports its link (CONNECTING/STREAMING/DOWN); this stage
adds STALLED: a free-running camera silent for `stall_timeout_s`, or a triggered camera
that let a trigger go unanswered.
"""

from __future__ import annotations

import logging
import threading
import time

import numpy as np

from pipeline.core.buffers import FramePool
from pipeline.core.messages import EndOfStream, Frame, FrameSlot, Job, Outcome, ReasonCode
from pipeline.core.queues import StageQueue
from pipeline.core.states import StageState
from pipeline.core.telemetry import Telemetry
from pipeline.parts.sources.exposure import ExposureClock
from pipeline.parts.sources.frame_source import (
    CameraSource,
    CameraState,
    FrameSource,
    LostFrame,
    SlotSource,
    SourceEnded,
    SourceError,
    SourceFrame,
    lost_frame,
)
from pipeline.parts.sources.trigger_line import TriggerLine
from pipeline.parts.sources.triggers import Part, TriggerInbox

log = logging.getLogger(__name__)

READ_TIMEOUT_S = 0.05
ERROR_BACKOFF_S = 0.1
# A source whose read() raises something other than SourceError (a driver bug) has lost
# the frame it was reading: that frame gets an ERROR verdict. This many in a row, and the
# camera is treated as down instead, so a broken driver cannot flood the line with verdicts.
RAISES_BEFORE_DOWN = 3
_SKIP = object()  # a free-running frame that no announced part claimed


class CaptureStage:
    def __init__(self, camera_id: str, source: FrameSource, outbox: StageQueue, telemetry: Telemetry,
                 stop: threading.Event, max_frames: int | None = None, stall_timeout_s: float = 2.0,
                 triggers: TriggerInbox | None = None, trigger_timeout_s: float = 0.5,
                 frame_pool: FramePool | None = None):
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
        self._raised_in_row = 0
        self.link = source if isinstance(source, CameraSource) else None
        self.free_running = self.link is None or self.link.free_running
        self.triggers = triggers
        self.trigger_timeout_ns = int(trigger_timeout_s * 1e9)
        self._quiet_since_ns = time.monotonic_ns()
        self.exposure = ExposureClock()
        self.trigger_line: TriggerLine | None = None
        self._reconnects_seen = 0
        self.frame_pool = frame_pool if _lends_to(source, frame_pool) else None
        self._slot: FrameSlot | None = None  # acquired, not yet filled by the source
        self.frames_unslotted = 0  # frames read into their own array although a pool was given

    def start(self) -> None:
        self.thread.start()

    def run(self) -> None:
        self.stats.move_to(StageState.RUNNING)
        self._quiet_since_ns = time.monotonic_ns()
        self._start_triggers()
        try:
            while not self.stop.is_set() and not self._reached_limit():
                self._capture_once()
            self.stats.move_to(StageState.STOPPED)
        except SourceEnded:
            self._set_state(CameraState.ENDED)
            self.stats.move_to(StageState.STOPPED)
        except BaseException as exc:
            log.exception("capture of camera %s crashed", self.camera_id)
            self.telemetry.record_crash(self.name, exc)
        finally:
            if self._slot is not None:
                self._slot.release()
                self._slot = None
            self._settle_waiting_parts()
            self._close_source()
            self.outbox.put(EndOfStream(self.name))

    def _reached_limit(self) -> bool:
        return self.max_frames is not None and self._next_id >= self.max_frames

    def _capture_once(self) -> None:
        self.stats.progressed()  # each pass is progress, frame or not: a hung read() is not
        self._sync_counters()
        self._settle_overdue_parts()
        try:
            got = self._read()
        except SourceError as exc:
            self._on_source_error(exc)
            return
        except SourceEnded:
            raise  # the end of a finite source is no fault: run() marks the camera ENDED
        except Exception as exc:  # noqa: BLE001 - a buggy source must not kill the camera thread
            self._on_unexpected_raise(exc)
            return
        self._raised_in_row = 0
        now = time.monotonic_ns()
        if got is None:
            self._follow_link(now)
            return
        if not isinstance(got, SourceFrame):  # a source breaking its protocol still gets a verdict
            got = SourceFrame(_NotAFrame(type(got).__name__))  # type: ignore[arg-type]
        slot = self._take_slot(got)
        exposure_ns, stale = self._place(got, now)
        if stale:
            self._slot = slot  # never judged: the slot takes the next frame
            self._on_stale_frame(exposure_ns, got.arrival_ns or now, now)
            return
        self.camera.last_frame_ns = self._quiet_since_ns = max(self._quiet_since_ns, exposure_ns)
        if self.camera.state is not CameraState.STREAMING:  # per frame: the common case costs one compare
            self._set_state(CameraState.STREAMING)
        part_id = self._part_for(got, exposure_ns, got.arrival_ns or now)
        if part_id is _SKIP:
            self.camera.frames_skipped += 1
            self._slot = slot  # nothing holds the image: the slot takes the next frame
            return
        self.outbox.put(self._job(got, now, part_id, slot, exposure_ns))

    def _read(self) -> SourceFrame | None:
        if self.frame_pool is None:
            return self.source.read(READ_TIMEOUT_S)
        if self._slot is None:
            self._slot = self.frame_pool.acquire(0.0)
        if self._slot is None:  # every slot in flight: the frame still comes, in its own array
            self.frames_unslotted += 1
            return self.source.read(READ_TIMEOUT_S)
        return self.source.read_into(self._slot.array, READ_TIMEOUT_S)  # type: ignore[attr-defined]

    def _take_slot(self, got: SourceFrame) -> FrameSlot | None:
        """The lent slot now holding `got`'s image, or None (the slot stays for the next read)."""
        slot = self._slot
        if slot is None or got.image is not slot.array:
            return None
        self._slot = None
        return slot

    def _follow_link(self, now: int) -> None:
        """Camera state while no frame comes: the source's link, else silence -> STALLED."""
        link = self.link.link_state if self.link is not None else CameraState.STREAMING
        if link is not CameraState.STREAMING:
            self._quiet_since_ns = now  # the stall clock starts when the link is back
            self._set_state(link)
        elif not self.free_running and self.camera.state in (CameraState.CONNECTING, CameraState.DOWN):
            self._set_state(CameraState.STREAMING)  # connected, waiting for triggers
        elif (self.free_running and now - self._quiet_since_ns > self.stall_timeout_ns
              and self.camera.state is CameraState.STREAMING):
            self._set_state(CameraState.STALLED)

    # ------------------------------------------------------------------ time of a frame
    def _place(self, got: SourceFrame, now: int) -> tuple[int, bool]:
        """(exposure on the monotonic clock, stale) from a live camera's own timestamp; a
        source that is not a live camera (synthetic, replay, a file) is read when it is
        read: its frames are placed at their arrival and never stale."""
        if self.link is None or not self.link.live:
            return got.arrival_ns or now, False
        return self.exposure.place(got.camera_ts_ns, got.arrival_ns or now)

    def _on_stale_frame(self, exposure_ns: int, arrival_ns: int, now: int) -> None:
        """A frame that came late for its own timestamp: never judged, and no sign of life
        (a frozen peer handing over what it had in flight), so the stall clock runs on."""
        self.camera.frames_stale += 1
        if self.triggers is not None:
            self.triggers.ledger.claim(exposure_ns, arrival_ns, stale=True)
        if self.camera.frames_stale <= 3 or self.camera.frames_stale % 100 == 0:
            log.warning("camera %s: frame arrived %.0f ms after its exposure; not judged (%d so far)",
                        self.camera_id, (arrival_ns - exposure_ns) / 1e6, self.camera.frames_stale)
        self._follow_link(now)

    def _part_for(self, got: SourceFrame, exposure_ns: int, arrival_ns: int) -> object:
        """The part the frame shows: with a trigger inbox only a part whose window holds
        the exposure (else the frame is skipped: it shows no announced part)."""
        if self.triggers is None:
            return got.part_id
        part_id = self.triggers.ledger.claim(exposure_ns, arrival_ns)
        return _SKIP if part_id is None else part_id

    # ------------------------------------------------------------------ announced parts
    def _start_triggers(self) -> None:
        if self.triggers is None:
            return
        if self.link is not None and self.link.software_triggered:  # one part in flight at a time
            self.trigger_line = TriggerLine(self.triggers.ledger, self.link.fire_trigger, self.camera_id,
                                            hold_s=self.trigger_timeout_ns / 1e9)
            self.trigger_line.start()
        self.triggers.start(self.stop)

    def _sync_counters(self) -> None:
        if self.link is not None and self.link.reconnects != self._reconnects_seen:
            self._reconnects_seen = self.camera.reconnects = self.link.reconnects
            self.exposure.reset()  # a new stream has a time base of its own
        if self.triggers is not None:
            self.camera.parts_announced = self.triggers.ledger.announced
            self.camera.triggers_rejected = self.triggers.rejected

    def _settle_overdue_parts(self) -> None:
        if self.triggers is None:
            return
        missed = self.triggers.ledger.overdue(time.monotonic_ns())
        if not missed:
            return
        up = self.camera.state is CameraState.STREAMING
        for part in missed:
            self._settle_part(part.part_id, *self._why_missed(part, up))
        if up and not self.free_running and not all(p.saw_stale for p in missed):
            self._set_state(CameraState.STALLED)  # connected, but it did not answer a trigger

    def _why_missed(self, part: Part, up: bool) -> tuple[ReasonCode, str]:
        window = f"{self.trigger_timeout_ns / 1e9:g} s"
        if part.saw_stale:
            return ReasonCode.STALE_FRAME, f"only a frame exposed before the part's window came within {window}"
        if up:
            return ReasonCode.MISSED_TRIGGER, f"no image exposed within {window} of the announcement"
        return ReasonCode.SOURCE_DOWN, f"camera {self.camera.state.value} while the part was expected"

    def _settle_waiting_parts(self) -> None:
        if self.triggers is None:
            return
        self.triggers.close()
        if self.trigger_line is not None:
            self.trigger_line.close()
        for part in self.triggers.ledger.take_all():
            self._settle_part(part.part_id, ReasonCode.SHUTDOWN, "the pipeline stopped before its image came")

    def _settle_part(self, part_id: str, code: ReasonCode, detail: str) -> None:
        frame = Frame(self.camera_id, self._take_id(), None, time.monotonic_ns(), time.time_ns(), part_id=part_id)
        self.camera.parts_missed += 1
        self.outbox.put(Job(frame).settle(Outcome.NOT_INSPECTED, code, detail, "capture"))

    def _job(self, got: SourceFrame, t_capture_ns: int, part_id: object, slot: FrameSlot | None,
             exposure_ns: int) -> Job:
        t_wall_ns = time.time_ns() - (time.monotonic_ns() - exposure_ns)  # the exposure, on the wall clock
        frame = Frame(self.camera_id, self._take_id(), got.image, t_capture_ns, t_wall_ns,
                      part_id=part_id, camera_ts_ns=got.camera_ts_ns, truth=got.truth, bayer=got.bayer)
        job = Job(frame, marks=(("capture", time.monotonic_ns()),), frame_slot=slot)  # born marked: no copy
        problem = image_problem(got.image)
        return job.settle(Outcome.ERROR, ReasonCode.BAD_FRAME, problem, "capture") if problem else job

    def _on_unexpected_raise(self, exc: Exception) -> None:
        self._raised_in_row += 1
        message = f"source raised {type(exc).__name__}: {exc}"[:300]
        if self._raised_in_row <= RAISES_BEFORE_DOWN:
            self._on_source_error(lost_frame(message))
        else:
            self._on_source_error(SourceError(message))

    def _take_id(self) -> int:
        frame_id = self._next_id
        self._next_id += 1
        self.camera.frames_captured = self._next_id
        self.stats.processed = self._next_id
        self.stats.progressed()
        return frame_id

    def _on_source_error(self, exc: SourceError) -> None:
        if isinstance(exc, LostFrame):
            # The source knows a frame existed but cannot deliver it: it still gets a verdict.
            now = time.monotonic_ns()
            part_id = exc.part_id
            if self.triggers is not None:  # the lost image was the waiting part's, if its window is open
                part_id = self.triggers.ledger.claim(now)
                if part_id is None:  # it shows no announced part (e.g. a late image after an outage)
                    self.camera.frames_skipped += 1
                    return
            frame = Frame(self.camera_id, self._take_id(), None, now, time.time_ns(), part_id=part_id)
            self.outbox.put(Job(frame).settle(Outcome.ERROR, exc.reason, str(exc)[:300], "capture"))
            return
        if self.camera.state is not CameraState.DOWN:
            log.warning("camera %s is down: %s", self.camera_id, exc)
        self._set_state(CameraState.DOWN)
        self.stop.wait(ERROR_BACKOFF_S)

    def _set_state(self, state: CameraState) -> None:
        was, was_bad = self.camera.state, self.camera.down_or_stalled
        if self.camera.move_to(state) and (was_bad or self.camera.down_or_stalled):
            log.warning("camera %s: %s -> %s", self.camera_id, was.value, state.value)

    def _close_source(self) -> None:
        try:
            self.source.close()
        except Exception:  # noqa: BLE001 - closing must not hide the real outcome
            log.exception("closing the source of camera %s failed", self.camera_id)


def _lends_to(source: FrameSource, pool: FramePool | None) -> bool:
    """Whether frames are read into `pool`'s slots: the source can write into a slot, and
    doing so saves work (a source that would only copy a decoded image into the slot
    gains by that only when the slot is page-locked for the GPU upload)."""
    return pool is not None and isinstance(source, SlotSource) and (pool.pinned or not source.copies_into_slot)


class _NotAFrame:
    """Stands in for the image when read() returned something other than a SourceFrame."""

    def __init__(self, returned: str):
        self.returned = returned


def image_problem(image: object) -> str:
    """Why `image` cannot be inspected, or "" when it is a usable uint8 gray/BGR image."""
    if isinstance(image, _NotAFrame):
        return f"source returned {image.returned}, not a SourceFrame"
    if not isinstance(image, np.ndarray):
        return f"source returned {type(image).__name__} instead of an image"
    if image.dtype != np.uint8:
        return f"image dtype {image.dtype}, expected uint8"
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] != 3):
        return f"image shape {image.shape}, expected HxW or HxWx3"
    if image.shape[0] < 2 or image.shape[1] < 2:
        return f"image shape {image.shape} is empty"
    return ""
