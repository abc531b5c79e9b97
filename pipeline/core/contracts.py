"""The contracts between the stages and the parts they run: one module, typed Protocols.

Bottom layer (imports only `messages` and `states`). `Parts` (pipeline.composition.app) is typed with
these, and a stage learns what a part can do from its type (`isinstance` against a
runtime-checkable Protocol, or an attribute every implementation has), never by probing
for attributes with getattr.

- source: `FrameSource` (and `SlotSource`, `CameraSource`, `RenderingSource`) deliver `SourceFrame`s
- transform: `Transform` turns an image into a model input slot (`StreamTransform` on a stream)
- backend: `InferenceBackend` runs a batch (`RemoteBackend` with a timeout)
- decoder: `Decoder` turns a batch's raw output into `Detections` per image
- publisher: `Publisher` sends verdicts and heartbeats
- sink: `VerdictSink` receives every published verdict (`EvidenceStore`: one the message names)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, Sequence, runtime_checkable

import numpy as np

from pipeline.config.models import PipelineConfig
from pipeline.core.messages import BayerPattern, Detections, Geometry, GroundTruth, Job, PublishedVerdict, TensorSlot
from pipeline.core.states import CameraState

# --------------------------------------------------------------------------- source


@dataclass(frozen=True, slots=True)
class SourceFrame:
    image: np.ndarray  # HxWx3 uint8 BGR or HxW uint8 gray, owned by the receiver
    camera_ts_ns: int | None = None  # the camera's own clock (or the stream's timestamp)
    part_id: str | None = None
    truth: GroundTruth | None = None
    # time.monotonic_ns() when the frame reached the host, when the source knows it better
    # than the capture stage's read (a grab thread, a driver's receive stamp); else None
    arrival_ns: int | None = None
    # set when `image` is a raw HxW Bayer mosaic, which a source writes only into a lent
    # frame slot of that shape (the GPU path demosaics in its kernel); `read` never does
    bayer: BayerPattern | None = None


@runtime_checkable
class FrameSource(Protocol):
    def open(self) -> None: ...

    def read(self, timeout_s: float) -> SourceFrame | None:
        """The next frame, or None when none arrived within `timeout_s`.
        Raises SourceEnded at a clean end, SourceError when broken."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class SlotSource(FrameSource, Protocol):
    """A FrameSource that can write its next frame into a lent buffer.

    `copies_into_slot`: True when `read_into` decodes elsewhere and then copies into the
    slot (an image file: OpenCV's imdecode has no destination), which only pays when the
    slot is page-locked (the GPU path's upload); False when the frame is written into the
    slot at no cost over `read` (a camera driver's buffer copied once, a video decoded
    into it, a synthetic frame rendered into it)."""

    copies_into_slot: bool

    def read_into(self, out: np.ndarray, timeout_s: float) -> SourceFrame | None:
        """Like `read`, with the image written into `out` (returned as the frame's image).
        A frame that does not fit `out` comes back in an array of its own."""
        ...


@runtime_checkable
class CameraSource(FrameSource, Protocol):
    """A FrameSource for a real camera, which keeps its own link up (reconnects by itself).

    `link_state` is CONNECTING, STREAMING or DOWN as the source sees its link; the capture
    stage adds STALLED (linked but silent). `free_running` sources deliver frames by
    themselves; the others deliver one per trigger, a software trigger where
    `software_triggered`. `fire_trigger` sends a software trigger and returns False when
    the source has none or is not connected; it may block for the camera's own call
    timeout, so only the camera's trigger thread calls it (pipeline.parts.sources.trigger_line),
    never a pipeline thread. `read` never blocks longer than its timeout, a dead camera
    included: reconnecting is the source's own business, off the caller's thread."""

    link_state: CameraState
    free_running: bool
    software_triggered: bool
    live: bool  # frames are exposed as they come (not read from storage): their timestamps place them in time
    reconnects: int  # links re-established after a loss

    def fire_trigger(self) -> bool: ...


@runtime_checkable
class RenderingSource(FrameSource, Protocol):
    """A FrameSource that makes its frames (the synthetic camera): `render(k)` is its k-th
    frame, made on demand without reading in order (the bench pre-renders a ring so)."""

    def render(self, k: int, out: np.ndarray | None = None) -> SourceFrame: ...


# --------------------------------------------------------------------------- transform


class Transform(Protocol):
    """Letterbox `image` into the slot array `out` (host or device); the geometry used.
    With `bayer` set, `image` is that raw HxW mosaic and is demosaiced first."""

    def __call__(self, image: np.ndarray, out: Any, bayer: BayerPattern | None = None) -> Geometry: ...


class Fence(Protocol):
    """A point in a GPU stream's work (a CUDA event) that the slots written before it carry."""

    def synchronize(self) -> None:
        """Return once the work before the fence has run (at once if known to have)."""

    def passed(self) -> None:
        """Record that the work before the fence has run, without asking the GPU: for a
        caller whose stream waited on the fence and has since been waited for by the host."""


@runtime_checkable
class StreamTransform(Protocol):
    """A transform that only enqueues its work; `flush()` returns the fence after it."""

    def __call__(self, image: np.ndarray, out: Any, bayer: BayerPattern | None = None) -> Geometry: ...

    def flush(self) -> Fence: ...


# --------------------------------------------------------------------------- backend


@runtime_checkable
class InferenceBackend(Protocol):
    """A loaded model ready to run batches; one thread calls `infer` at a time."""

    name: str  # runtime and device, e.g. "onnxruntime:CPUExecutionProvider"
    input_size: tuple[int, int]  # width, height of the model input
    input_dtype: type  # np.float32 or np.float16
    class_names: tuple[str, ...]
    max_batch: int
    accepts_device_input: bool  # True: `infer_tensors` takes `DeviceTensor`s (GPU preprocessing)
    # True: the output is the candidate head's (N, K, 6) rows (pipeline.parts.modelfile.candidate_head),
    # decoded by `decode_candidates`; False: the model's raw (N, 4+C, A), decoded in full.
    emits_candidates: bool

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """Run (N, 3, h, w) with N <= max_batch; the raw output, e.g. (N, 4+C, A)."""
        ...

    def infer_tensors(self, tensors: list[Any]) -> np.ndarray:
        """Run one batch given as the input slots' arrays: host (3, h, w) arrays for a CPU
        backend, `DeviceTensor`s for a GPU-resident one (no host copy). The returned
        array is fresh, or a view of a buffer the next call overwrites unless the caller
        took it with `LendsOutput.lend_output`."""
        ...

    def warmup(self, runs: int) -> None:
        """Run `runs` dummy batches so the first real frame pays no lazy init."""
        ...

    def close(self) -> None:
        """Release the runtime's resources; idempotent."""
        ...


@runtime_checkable
class RemoteBackend(Protocol):
    """A backend behind a network hop (Triton): each call carries a timeout, taken from
    the remaining budget of the batch's oldest part, so a slow server costs one verdict
    `deadline`, not a stalled stage."""

    def infer_tensors_within(self, tensors: list[Any], timeout_s: float) -> np.ndarray:
        """`infer_tensors` that gives up after `timeout_s` (BackendUnavailable, DEADLINE)."""
        ...


@runtime_checkable
class LendsOutput(Protocol):
    """A backend that writes its output into a ring of host buffers (`OutputRing`) and lends
    the last run's to the caller, so the next run may start while the last is decoded;
    a backend without it returns a fresh array per run."""

    def lend_output(self) -> TensorSlot | None:
        """The buffer behind the last `infer_tensors` result, now the caller's to release."""
        ...


@runtime_checkable
class RunsAhead(Protocol):
    """A `LendsOutput` backend that can return as soon as a batch is enqueued, so the
    decide stage, waiting on the fence, takes the output the moment it has landed (the
    infer stage uses it for batches of one)."""

    def start_tensors(self, tensors: Sequence[Any]) -> tuple[np.ndarray, Fence | None]:
        """Enqueue one batch as `infer_tensors` runs it and return at once: the host view
        its output will be in (lend it with `lend_output`) and the fence after which it is
        (None: the backend ran it to the end, e.g. where it cannot run ahead). The slots it
        reads stay in use until that fence has passed."""
        ...

    def run_time_ns(self, batch: int) -> int:
        """How long a run of `batch` images took from enqueue to output at warm-up (0 if
        not measured): what the deadline-aware batching plans with."""
        ...


# --------------------------------------------------------------------------- decoder


class Decoder(Protocol):
    """Raw model output and each image's geometry -> detections in source pixels.

    `decode_batch` decodes a whole batch (N, ...) in one pass and answers per image: its
    `Detections`, or the `ModelOutputError` (reason bad_output) that makes that image
    alone an ERROR; a batch it cannot read at all (wrong shape) raises one. Calling the
    decoder decodes one image's (1, ...) output and raises on a malformed tensor."""

    def __call__(self, raw: np.ndarray, geometry: Geometry) -> Detections: ...

    def decode_batch(self, raw: np.ndarray, geometries: Sequence[Geometry]) -> list[Detections | Exception]: ...


# --------------------------------------------------------------------------- publisher, sink


class Publisher(Protocol):
    """Sends each settled job's verdict and the heartbeats; counts what the wire refused."""

    dropped: int

    def publish_verdict(self, job: Job, t_mono_ns: int | None = None) -> int: ...

    def publish_heartbeat(self, status: dict[str, Any]) -> int: ...

    def close(self) -> None: ...


class VerdictSink(Protocol):
    """Everything that observes a published verdict receives it here, and only here:
    telemetry (status line, systemd STATUS, heartbeat counts), `/metrics`, the failed-part
    archive, the bench's recorder, the eval's scorer. Called on the publish thread right
    after the message was handed to ZeroMQ, with the clock reading that is the wire's
    `latency_ms.total` (`PublishedVerdict.t_publish_ns`); must be quick and never block.
    A sink that raises is logged and dropped: an observer never costs a part its verdict."""

    def verdict_published(self, published: PublishedVerdict) -> None: ...


@runtime_checkable
class EvidenceStore(VerdictSink, Protocol):
    """A sink whose file the message names (the failed-part archive): `claim` runs just
    before the send and returns the job naming the file it will write (or unchanged, when
    it keeps nothing of this part); the write itself is queued by `verdict_published`.
    `stats` are its counters for /metrics; `config_changed` tells it the config now in
    force (a rule reload), which its records name."""

    def claim(self, job: Job) -> Job: ...

    def stats(self) -> dict[str, int]: ...

    def config_changed(self, config: PipelineConfig) -> None: ...

    def close(self) -> None: ...
