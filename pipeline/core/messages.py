"""Messages that flow between stages: immutable, self-describing records.

Bottom layer: every stage imports this module, it imports no stage.

A `Job` is one captured frame on its way to a verdict. Each stage returns a new `Job`
(`Job.evolve`, a cheaper `dataclasses.replace`) with its own timestamp appended to `marks`, so a verdict alone
tells its whole latency story. A job whose `verdict` is already set (shed, expired or
failed upstream) is passed through untouched by the remaining stages and published:
that is how every captured frame gets exactly one verdict.

Buffer ownership: `Job.tensor` is a `TensorSlot` borrowed from the preprocess stage's
pool, `Job.frame_slot` the frame buffer the capture stage lent its source (the frame's
image is a view of it). The stage that consumes them (preprocess for a host frame once
the transform has read it, infer once the backend's run is over) or the code that
settles the job early (`Job.settle`) releases them; release is idempotent. A slot may
carry a `fence` (anything with `synchronize()`, e.g. the CUDA event recorded after the
upload and kernel that use it): `release` waits on it first, so a buffer the GPU may
still read or write is never handed out again. On the hot path the fence has completed
long before (the infer stream waited on it), so the wait costs nothing. `Job.raw` is the
job's row of its batch's raw model output (`RawBatch`), possibly in a host buffer the
backend lent from its ring: the decide stage releases it once decoded, `Job.settle` when
the job is settled before that; the buffer goes back when all its rows are released.
A batch the backend only enqueued also holds its jobs' input and frame slots until then
(the GPU reads them until the batch's fence), so infer hands them on with the rows.

Timing: each stage appends `(stage, t_done_ns)` to `marks` when it hands a job on and
`(stage, t_take_ns)` to `takes` when it took it from its queue, so a stage's share of
the latency splits into the wait in its queue and its own work (`stage_split`).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field, fields
from enum import Enum
from typing import Any, Callable, Sequence

import numpy as np


class Outcome(str, Enum):
    PASS = "PASS"
    FAIL = "FAIL"
    NOT_INSPECTED = "NOT_INSPECTED"
    ERROR = "ERROR"


class ReasonCode(str, Enum):
    """Machine-readable reason codes; PROTOCOL.md documents each."""

    DEFECT = "defect"  # a rule fired on a detection
    DEADLINE = "deadline"  # the verdict was ready after budget_ms
    QUEUE_FULL = "queue_full"  # shed by a queue's overflow policy
    NO_BUFFER = "no_buffer"  # no free tensor slot in time
    EXPIRED = "expired"  # already past its deadline before inference; not inspected
    STAGE_ERROR = "stage_error"  # a stage raised on this frame
    BAD_FRAME = "bad_frame"  # the source delivered an unusable image
    BAD_OUTPUT = "bad_output"  # the model produced NaN/inf or a malformed tensor
    SHUTDOWN = "shutdown"  # still in flight when the pipeline had to stop
    MISSED_TRIGGER = "missed_trigger"  # a part was announced but no image arrived
    SOURCE_DOWN = "source_down"  # camera not delivering while a part was expected
    STALE_FRAME = "stale_frame"  # the only image in the part's window was exposed before it
    BACKEND_UNAVAILABLE = "backend_unavailable"  # the inference server was down or refused the request


class BayerPattern(str, Enum):
    """A raw Bayer mosaic's layout, named as GenICam names it (the colours of the first two
    pixels of the first row: BayerRG8 is R G / G B). A frame whose `bayer` is set holds
    the undemosaiced HxW mosaic, one byte a pixel; the preprocess transform converts it
    (the GPU kernel as it resamples, the CPU path with OpenCV)."""

    RG = "BayerRG8"
    BG = "BayerBG8"
    GR = "BayerGR8"
    GB = "BayerGB8"


@dataclass(frozen=True, slots=True)
class GroundTruth:
    """What a synthetic source actually drew: for tests, evaluation and training."""

    boxes: np.ndarray  # (N, 4) float32, x1 y1 x2 y2 in source pixels
    class_ids: np.ndarray  # (N,) int64, indices into class_names
    class_names: tuple[str, ...]

    @property
    def defective(self) -> bool:
        return len(self.class_ids) > 0


@dataclass(frozen=True, slots=True)
class Frame:
    """An image as a source delivered it, stamped by the capture stage."""

    camera_id: str
    frame_id: int  # per-camera capture counter: 0, 1, 2, ... with no holes
    image: np.ndarray | None  # HxWx3 uint8 BGR or HxW uint8 gray (or mosaic, see bayer); None when settled
    t_capture_ns: int  # time.monotonic_ns() at capture; latency is measured from here
    t_wall_ns: int  # time.time_ns() at capture, for the message
    part_id: str | None = None
    camera_ts_ns: int | None = None  # the camera's own timestamp, when it has one
    truth: GroundTruth | None = None
    bayer: BayerPattern | None = None  # set: `image` is the raw HxW mosaic (only ever in a lent frame slot)

    def without_image(self) -> "Frame":
        """The same frame once its image is gone (its buffer went back to the pool)."""
        return Frame(self.camera_id, self.frame_id, None, self.t_capture_ns, self.t_wall_ns, self.part_id,
                     self.camera_ts_ns, self.truth)


@dataclass(frozen=True, slots=True)
class Geometry:
    """How source pixels map into the model input (letterbox): x_in = x_src*scale + pad_x."""

    scale: float
    pad_x: float
    pad_y: float
    src_width: int
    src_height: int

    def to_source(self, boxes: np.ndarray) -> np.ndarray:
        """Map (N, 4) xyxy boxes in model-input pixels back to clipped source pixels."""
        out = np.empty_like(boxes, dtype=np.float32)
        xs, ys = out[:, 0::2], out[:, 1::2]  # slices are views, so clipping writes through
        np.subtract(boxes[:, 0::2], self.pad_x, out=xs)
        np.subtract(boxes[:, 1::2], self.pad_y, out=ys)
        with np.errstate(over="ignore"):  # a box near float32's limit becomes inf here, then the image edge
            out /= self.scale
        np.clip(xs, 0, self.src_width, out=xs)
        np.clip(ys, 0, self.src_height, out=ys)
        return out


@dataclass(frozen=True, slots=True)
class Detections:
    """Parallel arrays, boxes in source pixels (xyxy)."""

    boxes: np.ndarray  # (N, 4) float32
    scores: np.ndarray  # (N,) float32
    class_ids: np.ndarray  # (N,) int64

    @classmethod
    def empty(cls) -> "Detections":
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64))

    def __len__(self) -> int:
        return len(self.scores)


@dataclass(frozen=True, slots=True)
class Reason:
    code: ReasonCode
    detail: str = ""
    class_name: str | None = None
    score: float | None = None
    box: tuple[float, float, float, float] | None = None
    area_px2: float | None = None
    area_mm2: float | None = None
    rule: str | None = None


@dataclass(frozen=True, slots=True)
class Verdict:
    outcome: Outcome
    reasons: tuple[Reason, ...] = ()
    late: bool = False


class TensorSlot:
    """A reusable buffer (model input or frame) lent by a pool; `release()` gives it back
    once, after waiting on its `fence` (the GPU work that still uses it), if any."""

    __slots__ = ("array", "fence", "_give_back", "_released")

    def __init__(self, array: Any, give_back: Callable[["TensorSlot"], None]):
        self.array = array
        self.fence: Any = None  # e.g. a CUDA event; `synchronize()` returns once the GPU is done with it
        self._give_back = give_back
        self._released = True

    def lend(self) -> "TensorSlot":
        self._released = False
        return self

    def release(self) -> None:
        if not self._released:
            self._released = True
            fence, self.fence = self.fence, None
            if fence is not None:
                fence.synchronize()
            self._give_back(self)


FrameSlot = TensorSlot  # a frame buffer lent to a source: the same lend/fence/release contract


class RawBatch:
    """One batch's raw model output, shared by its jobs on their way from infer to decide.

    `array` holds the batch's rows (row i: the i-th inferred job's output). When the
    backend lent the buffer (`slot`, from its ring of host output buffers), the buffer
    goes back once every row has been released: decoded by the decide stage, or dropped
    by `Job.settle` when a job is settled on the way. Rows are released from several
    threads (decide, a shedding queue, shutdown), hence the lock.

    A batch the backend only enqueued (`RunsAhead`) carries the `fence` after which
    `array` holds the output: a reader calls `wait()` first. It also holds the input and
    frame slots the run reads (`held`), which go back, after that fence, with the last row."""

    __slots__ = ("array", "_slot", "_pending", "_lock", "fence", "_held")

    def __init__(self, array: Any, rows: int, slot: TensorSlot | None = None, fence: Any = None,
                 held: Sequence[TensorSlot] = ()):
        self.array = array
        self._slot = slot
        self._pending = rows
        self._lock = threading.Lock()
        self.fence = fence
        self._held = list(held)

    def rows(self) -> list["RawRow"]:
        return [RawRow(self, i) for i in range(self._pending)]

    def wait(self) -> None:
        """Return once `array` holds the output (at once for a batch that was run, not enqueued)."""
        if self.fence is not None:
            self.fence.synchronize()

    def _row_done(self) -> None:
        with self._lock:
            self._pending -= 1
            last = self._pending == 0
        if not last:
            return
        self.wait()  # nothing goes back while the GPU may still read or write it
        for slot in self._held:
            slot.release()
        if self._slot is not None:
            self._slot.release()


class RawRow:
    """A job's row of its batch's `RawBatch`; `release()` once (idempotent)."""

    __slots__ = ("batch", "index", "_released")

    def __init__(self, batch: RawBatch, index: int):
        self.batch = batch
        self.index = index
        self._released = False

    def release(self) -> None:
        if not self._released:
            self._released = True
            self.batch._row_done()


@dataclass(frozen=True, slots=True)
class Job:
    frame: Frame
    marks: tuple[tuple[str, int], ...] = ()  # (stage, time.monotonic_ns() when it handed the job on)
    tensor: TensorSlot | None = None
    frame_slot: FrameSlot | None = None  # the lent buffer `frame.image` lives in, until the upload read it
    takes: tuple[tuple[str, int], ...] = ()  # (stage, time.monotonic_ns() when it took the job from its queue)
    geometry: Geometry | None = None
    detections: Detections | None = None
    verdict: Verdict | None = None
    model_backend: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. archive path; read-only by convention
    raw: RawRow | None = None  # the model's output for this frame, from infer until decide decoded it

    @property
    def settled(self) -> bool:
        return self.verdict is not None

    def evolve(self, **changes: Any) -> "Job":
        """`dataclasses.replace(self, **changes)` at about half its cost: each stage hands
        on a new job per frame, so this runs several times for every part."""
        if not changes.keys() <= _JOB_FIELDS:
            raise TypeError(f"Job has no field {sorted(changes.keys() - _JOB_FIELDS)}")
        get = changes.get
        return Job(get("frame", self.frame), get("marks", self.marks), get("tensor", self.tensor),
                   get("frame_slot", self.frame_slot), get("takes", self.takes), get("geometry", self.geometry),
                   get("detections", self.detections), get("verdict", self.verdict),
                   get("model_backend", self.model_backend), get("extra", self.extra), get("raw", self.raw))

    def mark(self, stage: str, taken_ns: int | None = None, t_ns: int | None = None, **changes: Any) -> "Job":
        """The job as `stage` hands it on, at `t_ns` (default now: a stage handing on a
        batch reads the clock once for all of it), taken from its queue at `taken_ns`."""
        takes = self.takes if taken_ns is None else self.takes + ((stage, taken_ns),)
        mark = (stage, time.monotonic_ns() if t_ns is None else t_ns)
        return self.evolve(marks=self.marks + (mark,), takes=takes, **changes)

    def without_frame_slot(self) -> "Job":
        """Give the frame buffer back (after its fence); the image is gone with it."""
        if self.frame_slot is None:
            return self
        self.frame_slot.release()
        return self.evolve(frame_slot=None, frame=self.frame.without_image())

    def settle(self, outcome: Outcome, code: ReasonCode, detail: str = "", stage: str = "", late: bool = False) -> "Job":
        """Give the job its final verdict now and free its input, frame and output buffers."""
        if self.tensor is not None:
            self.tensor.release()
        if self.raw is not None:
            self.raw.release()
        frame, slot = self.frame, self.frame_slot
        if slot is not None:
            slot.release()
            frame = frame.without_image()
        verdict = Verdict(outcome, (Reason(code, detail),), late)
        return self.evolve(frame=frame, frame_slot=None, tensor=None, raw=None, verdict=verdict,
                           marks=self.marks + ((stage or code.value, time.monotonic_ns()),))

    def age_ms(self, now_ns: int | None = None) -> float:
        return ((now_ns or time.monotonic_ns()) - self.frame.t_capture_ns) / 1e6


_JOB_FIELDS = frozenset(f.name for f in fields(Job))


@dataclass(frozen=True, slots=True)
class PublishedVerdict:
    """A verdict as it went out, as every `VerdictSink` receives it.

    `t_publish_ns` is the end of the latency clock, defined here once: the
    `time.monotonic_ns()` the publish stage reads right before it encodes and sends the
    message (after the archive named its file). The same reading decides `late` at
    publish time and is the message's `latency_ms.total`, so the wire, `/metrics`, the
    status line, systemd STATUS and the bench all report `latency_ms` below.
    """

    job: Job
    seq: int  # the per-camera sequence number the message carries
    t_publish_ns: int

    @property
    def latency_ns(self) -> int:
        return self.t_publish_ns - self.job.frame.t_capture_ns

    @property
    def latency_ms(self) -> float:
        """Capture to publish, the wire's `latency_ms.total` before its rounding to 1 us."""
        return self.latency_ns / 1e6


def mark_spans(t_capture_ns: int, marks: tuple[tuple[str, int], ...]) -> list[tuple[str, int, int]]:
    """(stage, from ns, to ns) per mark: the span of the latency each mark closes, from the
    previous mark (capture for the first). The one definition of a stage's share of the
    latency, its queue wait included: the wire, `/metrics` and the bench all read it here."""
    starts = (t_capture_ns, *(t_ns for _stage, t_ns in marks))
    return [(stage, start, t_ns) for (stage, t_ns), start in zip(marks, starts)]


def last_mark_ns(t_capture_ns: int, marks: tuple[tuple[str, int], ...]) -> int:
    """Where the span of what comes after the last mark (the publish) starts."""
    return marks[-1][1] if marks else t_capture_ns


def stage_split(t_capture_ns: int, marks: tuple[tuple[str, int], ...],
                takes: tuple[tuple[str, int], ...]) -> list[tuple[str, int, int]]:
    """(stage, queue wait ns, work ns) per mark: its span (`mark_spans`) split at the
    stage's take time; a stage that recorded no take (capture, a settling step) is all
    work. A stage that marks twice keeps its take for the first mark only."""
    taken = dict(takes)
    out = []
    for stage, start, t_ns in mark_spans(t_capture_ns, marks):
        t_take = taken.pop(stage, None)
        wait = 0 if t_take is None else max(0, min(t_take, t_ns) - start)
        out.append((stage, wait, t_ns - start - wait))
    return out


def queue_waits(t_capture_ns: int, marks: tuple[tuple[str, int], ...],
                takes: tuple[tuple[str, int], ...]) -> list[tuple[str, int]]:
    """(stage, ns waited in its queue) for each stage that took the job; a stage that took
    it but has not marked it (the publisher, as it sends) waited since the last mark.
    The waits of `stage_split` (it runs once per published verdict)."""
    waits = {stage: wait for stage, wait, _work in stage_split(t_capture_ns, marks, takes)}  # a second mark: its 0
    last = last_mark_ns(t_capture_ns, marks)
    return [(stage, waits[stage] if stage in waits else max(0, t_take - last)) for stage, t_take in takes]


@dataclass(frozen=True, slots=True)
class EndOfStream:
    """Flows down after a producer's last job, so every stage flushes and exits."""

    producer: str
