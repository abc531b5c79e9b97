"""`InferenceBackend` on ONNX Runtime's CUDA provider, zero-copy through IO binding.

Owns the GPU-resident ONNX Runtime path: the session's input is bound straight to the
device slot the GPU letterbox kernel wrote (batch 1: no copy at all; batch N: one
launch of the gather kernel, `SlotGather`, copying the N slots into one preallocated
batch buffer), the output is bound to a
preallocated device buffer and copied once into a pinned host buffer of a small ring
(`OutputRing`), which is what the decide stage decodes: the infer
stage borrows each run's buffer (`lend_output`) and decide gives it back once decoded,
so the next batch runs on the GPU while the last is decoded on the host; with every
buffer still out, the next run waits for one (never overwrites).

Streams: the backend owns one CUDA stream, the infer stream, and ONNX Runtime computes
on it (`user_compute_stream`). `wait_for(fences)` makes that stream wait on the
preprocess stage's events (the GPU waits, not the host); the gather copies and the
model then follow on the same stream. `infer_tensors` (warm-up, the bench's backend
alone, tests) has ONNX Runtime synchronise it once at the end of the run, then polls
the event after the output's copy to the host (K x 6 values an image: microseconds;
`await_short`) instead of blocking in a second synchronise. For batches of one the
pipeline's infer stage calls `start_tensors` instead (`RunsAhead`): with CUDA graphs the
replay and the copy are only enqueued (`disable_synchronize_execution_providers`, which
ONNX Runtime honours for a graph's replay too) and a fence (`CudaFence`, from a ring) is
recorded after them; the decide stage waits on the fence, in the driver, before it
decodes, so no thread hand-on lies between the GPU finishing and the decode.

CUDA graphs (`model.cuda_graph`): one graph per batch size 1..max_batch, each with its
own IO binding on the fixed batch and output buffers and its own graph id (ONNX
Runtime's `gpu_graph_id` run option); a batch of n replays graph n, no padding. ONNX
Runtime keeps captured graphs per calling thread, so `warmup` (start-up, main thread)
only plans every shape, and `warmup_thread`, called by the infer stage on its own
thread before the pipeline lets frames flow, captures them there. A capture while other
threads use the GPU fails ("operation not permitted when stream is capturing"), which is
why no capture may happen once frames flow.

What crosses the boundary: `infer_tensors` takes the slots' `DeviceTensor`s (host arrays
also work, for tests and warm-up, through `infer`) and returns a host numpy view that
stays valid until the next call, or until released when the caller took it with
`lend_output` (after `start_tensors`, the lent buffer carries the run's fence, and the
slots the run reads stay in use until it has passed). All device memory is allocated in `from_config` and
freed in `close()`; the `CudaDevice` (primary context) is shared with the preprocess
stage and released by whoever opened it (`close` does, when it owns it).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import numpy as np
import onnxruntime as ort
import pycuda.driver as cuda

from pipeline.config.model_onnxruntime import CUDA_PROVIDER, OnnxRuntimeCudaConfig
from pipeline.core.buffers import OutputRing
from pipeline.core.messages import TensorSlot
from pipeline.parts.backends.onnxruntime_backend import (
    has_candidate_head,
    open_session,
    ort_input_dtype,
    signature,
)
from pipeline.parts.gpu.cuda import CudaDevice, CudaError, CudaFence, await_short, cuda_call, enqueue_download
from pipeline.parts.gpu.device_buffers import DeviceTensor, PinnedAllocator, pinned_array
from pipeline.parts.gpu.slot_gather import SlotGather
from pipeline.parts.modelfile.model_info import ModelError, check_input, host_dtype, input_dtype, resolve_class_names

log = logging.getLogger(__name__)

# ONNX Runtime runs a graph id twice normally (per thread) and captures it on the third run
GRAPH_PLAIN_RUNS = 2  # start-up warm-up: plans every shape, captures nothing
GRAPH_CAPTURE_RUNS = 4  # the infer thread's warm-up: every graph captured, then replayed once


def _run_options(graph_id: int | None, ahead: bool) -> ort.RunOptions:
    """The options of a run: its graph id (a CUDA-graph session), and, for a run that only
    enqueues (`start_tensors`), no synchronise at its end (ONNX Runtime also honours that
    for a graph's replay since its PR #28686; an older one synchronises anyway, which
    leaves the run correct, only not ahead)."""
    options = ort.RunOptions()
    if graph_id is not None:
        options.add_run_config_entry("gpu_graph_id", str(graph_id))
    if ahead:
        options.add_run_config_entry("disable_synchronize_execution_providers", "1")
    return options


class OnnxRuntimeCudaBackend:
    """A validated CUDA-provider session with IO binding; see the module docstring."""

    accepts_device_input = True  # the assembly pairs it with the GPU letterbox kernel

    def __init__(self, session: ort.InferenceSession, device: CudaDevice, class_names: tuple[str, ...],
                 input_size: tuple[int, int], max_batch: int, output_tail: tuple[int, ...],
                 cuda_graph: bool = False, owns_device: bool = True, stream: cuda.Stream | None = None):
        self._session: ort.InferenceSession | None = session
        self.device = device
        self._owns_device = owns_device
        self._input_name = session.get_inputs()[0].name
        self._output_name = session.get_outputs()[0].name
        self.cuda_graph = cuda_graph
        self.name = "onnxruntime:CUDAExecutionProvider" + (":graph" if cuda_graph else "")
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.input_dtype = ort_input_dtype(session)
        self.class_names = tuple(class_names)
        self.max_batch = int(max_batch)
        self.emits_candidates = has_candidate_head(session)
        w, h = self.input_size
        out_dtype = host_dtype(session.get_outputs()[0].type)
        with device.active():
            self._stream = stream or cuda_call("creating the infer stream", cuda.Stream)
            self._copied = cuda_call("creating a CUDA event", cuda.Event, cuda.event_flags.DISABLE_TIMING)
            self._batch = DeviceTensor.allocate((self.max_batch, 3, h, w), self.input_dtype)
            self._output = DeviceTensor.allocate((self.max_batch, *output_tail), out_dtype)
        self._gather = SlotGather(device, self._batch, self._stream)  # compiled now, not on the first batch
        self._pinned = PinnedAllocator(device)
        self._outputs = OutputRing((self.max_batch, *output_tail), out_dtype, allocate=self._pinned)
        self._host_batch: np.ndarray | None = None  # only for host slots with max_batch > 1
        self._binding = session.io_binding()
        self._graphs: dict[int, tuple[ort.IOBinding, ort.RunOptions, ort.RunOptions]] = {}
        if cuda_graph:  # a captured graph replays fixed addresses: one binding per batch size, bound once
            for n in range(1, self.max_batch + 1):
                self._graphs[n] = (self._bound(session.io_binding(), self._batch.ptr, n), _run_options(n, False),
                                   _run_options(n, True))
        self._ahead_options = _run_options(None, True)
        # Twice the output buffers: a fence is recorded again only after its buffer (at the
        # latest, one of two recorded since) came back; a late reader of a re-recorded fence
        # would wait for the later run, which is correct, only later.
        with device.active():
            self._fences = [CudaFence(device) for _ in range(2 * self._outputs.count)]
        self._next_fence = 0
        self._last_fence: CudaFence | None = None  # the last run's, when it was only enqueued
        self._run_ns = [0] * (self.max_batch + 1)  # a run's time per batch size, at warm-up

    @classmethod
    def from_config(cls, cfg: OnnxRuntimeCudaConfig, device: CudaDevice | None = None) -> OnnxRuntimeCudaBackend:
        """Open `cfg.path` on CUDA device `cfg.device_id`; ModelError if that is not possible."""
        if CUDA_PROVIDER not in ort.get_available_providers():
            raise ModelError(f"{cfg.path}: this onnxruntime has no {CUDA_PROVIDER} "
                             f"(install onnxruntime-gpu: pip install '.[gpu]')")
        owns = device is None
        try:
            device = device or CudaDevice.open(cfg.device_id)
        except CudaError as exc:
            raise ModelError(f"{cfg.path}: {exc}") from None
        try:
            return cls._open(cfg, device, owns)
        except BaseException:
            if owns:
                device.close()
            raise

    @classmethod
    def _open(cls, cfg: OnnxRuntimeCudaConfig, device: CudaDevice, owns: bool) -> OnnxRuntimeCudaBackend:
        with device.active():
            stream = cuda_call("creating the infer stream", cuda.Stream)
        session = open_session(cfg, cuda_stream=stream.handle)
        sig = signature(session, cfg.path)
        check_input(sig, cfg.input_size, cfg.max_batch)
        input_dtype(sig)
        names = resolve_class_names(sig, cfg.class_names, session.get_modelmeta().custom_metadata_map)
        tail = output_tail(cfg, session)
        return cls(session, device, names, cfg.input_size, cfg.max_batch, tail, cfg.cuda_graph, owns, stream)

    # ------------------------------------------------------------------ running
    def wait_for(self, fences: Sequence) -> None:
        """Order the next run after the preprocess events `fences` (`CudaFence`s), on the GPU."""
        with self.device.active():
            for fence in fences:
                cuda_call("ordering inference after the preprocess", self._stream.wait_for_event, fence.event)

    def infer_tensors(self, tensors: Sequence[DeviceTensor]) -> np.ndarray:
        """Run one batch of device slots; a host view of the raw output, valid until the next call."""
        host, _ = self._start(tensors, ahead=False)
        return host

    def start_tensors(self, tensors: Sequence[DeviceTensor]) -> tuple[np.ndarray, CudaFence | None]:
        """Enqueue one batch and return at once (`RunsAhead`): the host view its output
        lands in, and the fence after which it has. Only a CUDA-graph session runs ahead;
        without graphs the run goes to its end (fence None): on the H200 a session whose
        unsynchronised runs were not graph replays aborted when it was destroyed."""
        return self._start(tensors, ahead=self.cuda_graph)

    def run_time_ns(self, batch: int) -> int:
        """A run of `batch` images at warm-up, enqueue to output (host batch copy included)."""
        return self._run_ns[batch] if 1 <= batch <= self.max_batch else 0

    def _start(self, tensors: Sequence[DeviceTensor], ahead: bool) -> tuple[np.ndarray, CudaFence | None]:
        n = len(tensors)
        if n and isinstance(tensors[0], np.ndarray):  # host slots (model.preprocess: cpu): run, not ahead
            return self._infer_host_slots(tensors), None
        self._check_tensors(tensors)
        with self.device.active():
            if n == 1 and not self.cuda_graph:
                ptr = tensors[0].ptr  # zero-copy: the kernel's output slot is the model input
            else:
                self._gather(tensors)  # on the infer stream, after its waits on the preprocess events
                ptr = self._batch.ptr
            return self._run(ptr, n, ahead)

    def _infer_host_slots(self, tensors: Sequence[np.ndarray]) -> np.ndarray:
        if len(tensors) == 1:
            return self.infer(tensors[0][None])
        if self._host_batch is None:
            self._host_batch = pinned_array(self._batch.shape, self.input_dtype)
        for i, tensor in enumerate(tensors[: self.max_batch]):
            self._host_batch[i] = tensor
        return self.infer(self._host_batch[: len(tensors)])

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """Run a host batch (warm-up, tests): one H2D copy into the batch buffer, then as above."""
        n = batch.shape[0]
        w, h = self.input_size
        if batch.shape[1:] != (3, h, w) or not 1 <= n <= self.max_batch or batch.dtype != self.input_dtype:
            raise ValueError(f"batch {batch.shape} {batch.dtype} does not fit (1..{self.max_batch}, 3, {h}, {w}) "
                             f"{np.dtype(self.input_dtype)}")
        with self.device.active():
            cuda_call("copying a batch to the GPU", cuda.memcpy_htod, self._batch.allocation,
                      np.ascontiguousarray(batch))
            return self._run(self._batch.ptr, n, ahead=False)[0]

    def _check_tensors(self, tensors: Sequence[DeviceTensor]) -> None:
        w, h = self.input_size
        want = ((3, h, w), np.dtype(self.input_dtype))
        if not 1 <= len(tensors) <= self.max_batch:
            raise ValueError(f"{len(tensors)} inputs, expected 1..{self.max_batch}")
        for t in tensors:
            if not isinstance(t, DeviceTensor) or (t.shape, t.dtype) != want:
                got = f"{t.shape} {t.dtype}" if isinstance(t, DeviceTensor) else type(t).__name__
                raise ValueError(f"input {got} is not a {want[0]} {want[1]} DeviceTensor")

    def _run(self, input_ptr: int, rows: int, ahead: bool) -> tuple[np.ndarray, CudaFence | None]:
        """Run (or, `ahead`, only enqueue) the model on `rows` images at `input_ptr`, then the
        copy of its output into the ring's current host buffer."""
        if self._session is None:
            raise RuntimeError(f"{self.name} backend is closed")
        if self.cuda_graph:
            binding, synced, unsynced = self._graphs[rows]
            options = unsynced if ahead else synced
        else:
            binding, options = self._bound(self._binding, input_ptr, rows), self._ahead_options if ahead else None
        host = self._outputs.current()[:rows]  # first: with every buffer still out, nothing is enqueued yet
        self._session.run_with_iobinding(binding, options)  # without `ahead`: returns once the stream is synchronised
        enqueue_download(host, self._output.ptr, self._stream, "copying the model output to the host")
        if ahead:
            fence = self._last_fence = self._fences[self._next_fence].record(self._stream)
            self._next_fence = (self._next_fence + 1) % len(self._fences)
            return host, fence
        self._last_fence = None
        await_short(self._copied, self._stream, "copying the model output to the host")
        return host, None

    def lend_output(self) -> TensorSlot | None:
        """The last run's host output buffer, the caller's until it releases it (decide does);
        after an enqueued run it carries that run's fence, so it never goes back early."""
        slot = self._outputs.lend()
        if slot is not None and self._last_fence is not None:
            slot.fence = self._last_fence
        return slot

    def _bound(self, binding: ort.IOBinding, input_ptr: int, rows: int) -> ort.IOBinding:
        w, h = self.input_size
        device_id = self.device.device_id
        binding.bind_input(self._input_name, "cuda", device_id, self.input_dtype, [rows, 3, h, w], input_ptr)
        binding.bind_output(self._output_name, "cuda", device_id, self._output.dtype,
                            [rows, *self._output.shape[1:]], self._output.ptr)
        return binding

    def warmup(self, runs: int) -> None:
        """Every batch size from 1 to max_batch: cuDNN picks (and with EXHAUSTIVE, times)
        its algorithms per shape, which cost up to a second on first use in `pipeline bench`.
        With CUDA graphs the capture belongs to the infer thread (`warmup_thread`)."""
        self._warm(min(max(runs, 1), GRAPH_PLAIN_RUNS) if self.cuda_graph else max(runs, 1))

    def warmup_thread(self) -> None:
        """Capture every batch size's CUDA graph on the calling thread (the infer stage's)."""
        if self.cuda_graph:
            self._warm(GRAPH_CAPTURE_RUNS)

    def _warm(self, runs: int) -> None:
        w, h = self.input_size
        for n in range(1, self.max_batch + 1):
            dummy = np.zeros((n, 3, h, w), self.input_dtype)
            for _ in range(runs):
                started = time.perf_counter_ns()
                self.infer(dummy)
                self._run_ns[n] = time.perf_counter_ns() - started  # the last (captured, replayed) run counts

    def close(self) -> None:
        """Free the device buffers and drop the session; idempotent."""
        if self._session is None:
            return
        with self.device.active():  # nothing of ours may still run when the session and buffers go
            cuda_call("finishing the infer stream", self._stream.synchronize)
        self._session = None
        self._binding = None
        self._graphs = {}
        with self.device.active():
            self._batch.free()
            self._output.free()
        self._pinned.close()  # the ring's buffers: the stages have stopped, nothing reads them
        if self._owns_device:
            self.device.close()


def output_tail(cfg: OnnxRuntimeCudaConfig, session: ort.InferenceSession) -> tuple[int, ...]:
    """The first output's shape after the batch axis, for this input size.

    Symbolic axes (e.g. the anchor count) are resolved by one run of a CPU session, at
    start-up only: a CUDA-graph session must not be run with host buffers.
    """
    declared = session.get_outputs()[0].shape[1:]
    if all(isinstance(d, int) and d > 0 for d in declared):
        return tuple(declared)
    w, h = cfg.input_size
    probe = ort.InferenceSession(str(cfg.path), providers=["CPUExecutionProvider"])
    dtype = ort_input_dtype(probe)
    out = probe.run(None, {probe.get_inputs()[0].name: np.zeros((1, 3, h, w), dtype)})[0]
    return tuple(out.shape[1:])
