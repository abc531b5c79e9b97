"""Messages that flow between stages: immutable, self-describing records.

Bottom layer: every stage imports this module, it imports no stage.

A `Job` is one captured frame on its way to a verdict. Each stage returns a new `Job`
(`dataclasses.replace`) with its own timestamp appended to `marks`, so a verdict alone
tells its whole latency story. A job whose `verdict` is already set (shed, expired or
failed upstream) is passed through untouched by the remaining stages and published:
that is how every captured frame gets exactly one verdict.

Buffer ownership: `Job.tensor` is a `TensorSlot` borrowed from the preprocess stage's
pool. The stage that consumes it (infer) or the code that settles the job early
(`Job.settle`) releases it; release is idempotent.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Any, Callable

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
    BACKEND_UNAVAILABLE = "backend_unavailable"  # the inference server was down or refused the request


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
    image: np.ndarray | None  # HxWx3 uint8 BGR or HxW uint8 gray; None when settled
    t_capture_ns: int  # time.monotonic_ns() at capture; latency is measured from here
    t_wall_ns: int  # time.time_ns() at capture, for the message
    part_id: str | None = None
    camera_ts_ns: int | None = None  # the camera's own timestamp, when it has one
    truth: GroundTruth | None = None


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
    """A reusable model-input buffer lent by a pool; `release()` gives it back once."""

    __slots__ = ("array", "_give_back", "_released")

    def __init__(self, array: Any, give_back: Callable[["TensorSlot"], None]):
        self.array = array
        self._give_back = give_back
        self._released = True

    def lend(self) -> "TensorSlot":
        self._released = False
        return self

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._give_back(self)


@dataclass(frozen=True, slots=True)
class Job:
    frame: Frame
    marks: tuple[tuple[str, int], ...] = ()  # (stage, time.monotonic_ns() when it finished)
    tensor: TensorSlot | None = None
    geometry: Geometry | None = None
    detections: Detections | None = None
    verdict: Verdict | None = None
    model_backend: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. archive path; read-only by convention

    @property
    def settled(self) -> bool:
        return self.verdict is not None

    def mark(self, stage: str, **changes: Any) -> "Job":
        return replace(self, marks=self.marks + ((stage, time.monotonic_ns()),), **changes)

    def settle(self, outcome: Outcome, code: ReasonCode, detail: str = "", stage: str = "", late: bool = False) -> "Job":
        """Give the job its final verdict now and free its input buffer."""
        if self.tensor is not None:
            self.tensor.release()
        verdict = Verdict(outcome, (Reason(code, detail),), late)
        return replace(self, tensor=None, verdict=verdict, marks=self.marks + ((stage or code.value, time.monotonic_ns()),))

    def age_ms(self, now_ns: int | None = None) -> float:
        return ((now_ns or time.monotonic_ns()) - self.frame.t_capture_ns) / 1e6


@dataclass(frozen=True, slots=True)
class EndOfStream:
    """Flows down after a producer's last job, so every stage flushes and exits."""

    producer: str
