"""The one place for hand-written fakes, and only at true edges of the pipeline.

Each fake *wraps* a real part and injects one kind of fault on chosen calls; everything
else goes to the real thing. So a test that uses `FaultySource(real synthetic source)`
still renders real frames, and `FaultyBackend(real ONNX Runtime backend)` still runs the
real model on every call it does not break. Calls are counted from 0.
"""

from __future__ import annotations

import threading
from typing import Any, Collection

import cv2
import numpy as np

from pipeline.core.buffers import OutputRing
from pipeline.core.contracts import InferenceBackend
from pipeline.core.messages import BayerPattern, TensorSlot
from pipeline.parts.sources.frame_source import SourceFrame, lost_frame

# What FaultySource can do to the k-th frame its real source delivers.
SOURCE_FAULTS = ("raise", "lost", "timeout", "none_image", "float_image", "rgba_image", "tiny_image", "not_a_frame")


class FaultySource:
    """A real FrameSource whose k-th delivered frame is replaced by `faults[k]`.

    - raise: read() raises RuntimeError (a driver bug)
    - lost: read() raises the protocol's lost-frame SourceError
    - timeout: read() returns None (no frame arrived in time; not a frame at all)
    - none_image / float_image / rgba_image / tiny_image: a SourceFrame with a bad image
    - not_a_frame: a bare ndarray instead of a SourceFrame (a source breaking its protocol)
    """

    def __init__(self, inner: Any, faults: dict[int, str]):
        unknown = set(faults.values()) - set(SOURCE_FAULTS)
        assert not unknown, f"unknown faults {unknown}"
        self.inner = inner
        self.faults = dict(faults)
        self.delivered = 0  # frames the real source delivered so far

    def open(self) -> None:
        self.inner.open()

    def close(self) -> None:
        self.inner.close()

    def read(self, timeout_s: float):
        got = self.inner.read(timeout_s)
        if got is None:
            return None
        fault = self.faults.get(self.delivered)
        self.delivered += 1
        return got if fault is None else _inject(fault, got)


def _inject(fault: str, got: SourceFrame):
    image = got.image
    if fault == "raise":
        raise RuntimeError("injected: driver returned a corrupt buffer")
    if fault == "lost":
        raise lost_frame("injected: trigger fired but no image arrived")
    if fault == "timeout":
        return None
    bad = {
        "none_image": None,
        "float_image": image.astype(np.float32),
        "rgba_image": np.dstack([image, image[..., :1]]) if image.ndim == 3 else image[..., None].repeat(4, 2),
        "tiny_image": image[:1, :1],
        "not_a_frame": image,
    }[fault]
    return bad if fault == "not_a_frame" else SourceFrame(bad, got.camera_ts_ns, got.part_id, got.truth)


class WrappedBackend:
    """A real InferenceBackend seen through a wrapper: every member of the contract
    (pipeline.core.contracts.InferenceBackend) is the real backend's, named one by one so
    that the wrapper is the contract and nothing more. Subclasses override what they break."""

    def __init__(self, inner: InferenceBackend):
        self.inner = inner
        self.name = inner.name
        self.input_size = inner.input_size
        self.input_dtype = inner.input_dtype
        self.class_names = inner.class_names
        self.max_batch = inner.max_batch
        self.accepts_device_input = inner.accepts_device_input
        self.emits_candidates = inner.emits_candidates

    def infer(self, batch: np.ndarray) -> np.ndarray:
        return self.inner.infer(batch)

    def infer_tensors(self, tensors: list[Any]) -> np.ndarray:
        return self.inner.infer_tensors(tensors)

    def warmup(self, runs: int) -> None:
        self.inner.warmup(runs)

    def close(self) -> None:
        self.inner.close()


class RingBackend(WrappedBackend):
    """A real host backend whose output lands in a ring of host buffers it lends
    (`LendsOutput`), as the GPU backends' D2H copy does: the GPU is the edge faked here."""

    def __init__(self, inner: InferenceBackend, count: int, wait_s: float = 30.0):
        super().__init__(inner)
        self.ring: OutputRing | None = None
        self.count, self.wait_s = count, wait_s

    def infer_tensors(self, tensors: list[Any]) -> np.ndarray:
        out = self.inner.infer_tensors(tensors)
        if self.ring is None:
            self.ring = OutputRing((self.max_batch, *out.shape[1:]), out.dtype, self.count, self.wait_s)
        host = self.ring.current()[: len(out)]
        host[...] = out
        return host

    def lend_output(self) -> TensorSlot | None:
        assert self.ring is not None
        return self.ring.lend()


class LandingFence:
    """What an enqueued run's CUDA event stands for: the output lands in the host buffer
    when the fence is waited on (`synchronize`), never before."""

    def __init__(self, land):
        self._land = land
        self.waits = 0

    def synchronize(self) -> None:
        if self._land is not None:
            self.waits += 1
            self._land()
            self._land = None

    def passed(self) -> None:
        self.synchronize()


class AheadBackend(RingBackend):
    """A real host backend that only "enqueues" its batches (`RunsAhead`), as the CUDA
    backend does: `start_tensors` runs the real model but leaves NaN in the lent buffer
    until the returned fence is waited on, as a GPU whose copy has not landed yet would.
    A reader that does not wait decodes NaN (an ERROR verdict), so a test sees it."""

    def __init__(self, inner: InferenceBackend, count: int, wait_s: float = 30.0):
        super().__init__(inner, count, wait_s)
        self.fences: list[LandingFence] = []

    def start_tensors(self, tensors: list[Any]) -> tuple[np.ndarray, LandingFence]:
        out = self.inner.infer_tensors(tensors)
        if self.ring is None:
            self.ring = OutputRing((self.max_batch, *out.shape[1:]), out.dtype, self.count, self.wait_s)
        host = self.ring.current()[: len(out)]
        host[...] = np.nan

        def land() -> None:
            host[...] = out

        self.fences.append(LandingFence(land))
        return host, self.fences[-1]

    def run_time_ns(self, batch: int) -> int:
        return 0


class StreamOrderedBackend(WrappedBackend):
    """A real host backend that orders its runs after fences as the GPU backends do
    (`StreamOrdered`: its stream waits on them, and `infer_tensors` returns once the
    host waited for that stream); it records the fences it was given. The GPU is the
    edge faked here: the host run is over when it returns, so every fence has passed."""

    def __init__(self, inner: InferenceBackend):
        super().__init__(inner)
        self.waited_on: list[Any] = []

    def wait_for(self, fences: list[Any]) -> None:
        self.waited_on += fences


class FaultyBackend(WrappedBackend):
    """A real InferenceBackend that misbehaves on chosen `infer` calls.

    - raise_on: those calls raise RuntimeError (a lost device, a CUDA error)
    - poison_on: those calls return the real output with `poison` (NaN/inf) written into it
    - hang_on: those calls block until `release` is set, then run normally
    Every other call is the real backend's. Handed to the pipeline as its substituted
    backend, it also serves the start-up's warm-up; `arm()` after the build makes the
    calls count from 0 again, so the faults land on the first live frames.
    """

    def __init__(self, inner: InferenceBackend, raise_on: Collection[int] = (), poison_on: Collection[int] = (),
                 poison: float = float("nan"), hang_on: Collection[int] = ()):
        super().__init__(inner)
        self.raise_on, self.poison_on, self.hang_on = set(raise_on), set(poison_on), set(hang_on)
        self.poison = poison
        self.calls = 0
        self.hanging = threading.Event()  # set while a call is blocked
        self.release = threading.Event()

    def arm(self) -> None:
        self.calls = 0

    def infer_tensors(self, tensors: list) -> np.ndarray:
        """The path the infer stage prefers: through the same faults as `infer`."""
        return self.infer(np.stack(tensors))

    def infer(self, batch: np.ndarray) -> np.ndarray:
        call = self.calls
        self.calls += 1
        if call in self.raise_on:
            raise RuntimeError(f"injected: CUDA error 700 (illegal address) on call {call}")
        if call in self.hang_on:
            self.hanging.set()
            self.release.wait(60)
        output = self.inner.infer(batch)
        if call in self.poison_on:
            output = np.array(output, copy=True)
            output.reshape(-1)[:: max(1, output.size // 7)] = self.poison
        return output


class StallingArchive:
    """A real failed-part archive whose `claim` (just before the send) stalls `stall_s` on
    every frame whose id is a multiple of `every`: time after decide that only a
    publish-time deadline can see."""

    def __init__(self, inner: Any, stall_s: float, every: int = 3):
        self.inner = inner
        self.stall_s = stall_s
        self.every = every

    def claim(self, job: Any) -> Any:
        if job.frame.frame_id % self.every == 0:
            threading.Event().wait(self.stall_s)  # the stall itself is the fault, not a wait for something
        return self.inner.claim(job)

    def verdict_published(self, published: Any) -> None:
        self.inner.verdict_published(published)

    def stats(self) -> dict[str, int]:
        return self.inner.stats()

    def config_changed(self, config: Any) -> None:
        self.inner.config_changed(config)

    def close(self) -> None:
        self.inner.close()


class BayerCamera:
    """A real synthetic source seen through a Bayer sensor: each rendered BGR frame is
    sampled to its `pattern` mosaic (one byte a pixel), as a GenICam Bayer camera's
    buffer holds it. `read_into` writes the mosaic into an HxW slot (the GPU path's
    layout) and marks the frame with its pattern; `read` demosaics with OpenCV, as the
    GenICam source does for a frame outside a slot."""

    copies_into_slot = False

    def __init__(self, inner: Any, pattern: BayerPattern):
        self.inner = inner
        self.pattern = pattern
        red = {BayerPattern.RG: (0, 0), BayerPattern.GR: (0, 1), BayerPattern.GB: (1, 0), BayerPattern.BG: (1, 1)}
        self._red_yx = red[pattern]

    def open(self) -> None:
        self.inner.open()

    def close(self) -> None:
        self.inner.close()

    def _mosaic(self, bgr: np.ndarray, out: np.ndarray) -> None:
        ry, rx = self._red_yx
        out[:] = bgr[:, :, 1]  # green everywhere, then red and blue at their sites
        out[ry::2, rx::2] = bgr[ry::2, rx::2, 2]
        out[1 - ry::2, 1 - rx::2] = bgr[1 - ry::2, 1 - rx::2, 0]

    def read_into(self, out: np.ndarray | None, timeout_s: float) -> SourceFrame | None:
        got = self.inner.read(timeout_s)
        if got is None:
            return None
        if out is not None and out.shape == got.image.shape[:2]:
            self._mosaic(got.image, out)
            return SourceFrame(out, truth=got.truth, bayer=self.pattern)
        mosaic = np.empty(got.image.shape[:2], np.uint8)
        self._mosaic(got.image, mosaic)
        return SourceFrame(cv2.cvtColor(mosaic, _TO_BGR[self.pattern]), truth=got.truth)

    def read(self, timeout_s: float) -> SourceFrame | None:
        return self.read_into(None, timeout_s)


_TO_BGR = {BayerPattern.RG: cv2.COLOR_BayerRGGB2BGR, BayerPattern.BG: cv2.COLOR_BayerBGGR2BGR,
           BayerPattern.GR: cv2.COLOR_BayerGRBG2BGR, BayerPattern.GB: cv2.COLOR_BayerGBRG2BGR}


class RecordingSink:
    """The gateway's PLC edge: an output (the hub's `Sink` protocol) that keeps every
    camera snapshot the hub hands it, in order, instead of writing registers."""

    name = "recorder"

    def __init__(self) -> None:
        self.snapshots: list[Any] = []
        self._lock = threading.Lock()

    def start(self) -> None:
        pass

    def update(self, snap: Any) -> None:
        with self._lock:
            self.snapshots.append(snap)

    def problem(self) -> str:
        return ""

    def close(self) -> None:
        pass
