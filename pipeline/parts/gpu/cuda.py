"""The CUDA device, its primary context, and the one place CUDA errors become exceptions.

Owns (1) `CudaError` and `cuda_call`, which every CUDA call in the project goes through,
so a failure names what was being done and on which device (the hot path's copies,
`enqueue_upload`/`enqueue_download`, and `await_short`, the bounded poll for a short
copy, convert their errors the same way), (2) `CudaFence`, an event recorded on a stream
that slots and output buffers carry until the GPU is done with them, and (3) `CudaDevice`, which
retains the device's *primary* context. The primary context is the one the CUDA runtime
API uses, so device pointers allocated here are valid for ONNX Runtime's CUDA provider
and TensorRT without any copy.

What crosses the boundary: a `CudaDevice` is opened once at start-up (`open`) and
released once at shutdown (`close`). CUDA contexts are per thread, so every thread that
touches the GPU wraps its work in `with device.active():` (a push/pop pair, about a
microsecond); the stages' threads do this on every call instead of assuming a context.
"""

from __future__ import annotations

import ctypes
import functools
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
import pycuda.driver as cuda

from pipeline.core.errors import PipelineError

T = TypeVar("T")


class CudaError(PipelineError, RuntimeError):
    """A CUDA driver call failed; the message says what was being done."""


def cuda_call(what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run one CUDA call; a driver error becomes a `CudaError` naming `what`."""
    try:
        return fn(*args, **kwargs)
    except cuda.Error as exc:
        raise CudaError(f"{what}: {exc}") from exc


def enqueue_upload(dst_ptr: int, src: np.ndarray, stream: cuda.Stream, what: str) -> None:
    """Enqueue an H2D copy of the page-locked, C-contiguous `src` to `dst_ptr` on `stream`,
    keeping the interpreter lock (the caller holds the device context).

    pycuda's `memcpy_htod_async` gives the lock up around the driver call; the call only
    enqueues, so that buys nothing, and with a dozen camera and stage threads contending,
    taking the lock back costs up to a switch interval (0.5 ms on the GPU path) per frame.
    The driver's own entry point through ctypes' PyDLL keeps it."""
    _checked(_driver().cuMemcpyHtoDAsync_v2(dst_ptr, src.__array_interface__["data"][0], src.nbytes,
                                            stream.handle), what)


def enqueue_download(dst: np.ndarray, src_ptr: int, stream: cuda.Stream, what: str) -> None:
    """`enqueue_upload`'s twin: a D2H copy into the page-locked, C-contiguous `dst`."""
    _checked(_driver().cuMemcpyDtoHAsync_v2(dst.__array_interface__["data"][0], src_ptr, dst.nbytes,
                                            stream.handle), what)


@functools.cache
def _driver() -> ctypes.PyDLL:
    """libcuda (loaded already by pycuda) with the two copies' signatures; PyDLL: its calls
    keep the interpreter lock."""
    lib = ctypes.PyDLL("libcuda.so.1")
    lib.cuMemcpyHtoDAsync_v2.argtypes = [ctypes.c_uint64, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
    lib.cuMemcpyDtoHAsync_v2.argtypes = [ctypes.c_void_p, ctypes.c_uint64, ctypes.c_size_t, ctypes.c_void_p]
    lib.cuMemcpyHtoDAsync_v2.restype = lib.cuMemcpyDtoHAsync_v2.restype = ctypes.c_int
    lib.cuGetErrorName.argtypes = [ctypes.c_int, ctypes.POINTER(ctypes.c_char_p)]
    return lib


def _checked(status: int, what: str) -> None:
    if status:
        name = ctypes.c_char_p()
        _driver().cuGetErrorName(status, ctypes.byref(name))
        raise CudaError(f"{what}: {(name.value or b'CUDA error').decode()} ({status})")


SHORT_WAIT_S = 0.0005  # what `await_short` polls before it blocks: longer than a copy of a batch's K x 6 rows


def await_short(event: cuda.Event, stream: cuda.Stream, what: str) -> None:
    """Wait for the work enqueued on `stream` so far, which is microseconds from done (a
    small copy), by recording `event` and polling it, holding the interpreter lock; block
    only after SHORT_WAIT_S.

    Why: a blocking wait gives the lock up, and with a dozen camera and stage threads
    contending, taking it back costs up to a switch interval (0.5 ms on the GPU path):
    more than the copy. Polling for a few microseconds keeps the lock and the thread."""
    try:
        event.record(stream)
        deadline = time.perf_counter() + SHORT_WAIT_S
        while not event.query():
            if time.perf_counter() > deadline:
                event.synchronize()
                return
    except cuda.Error as exc:
        raise CudaError(f"{what}: {exc}") from exc


def device_count() -> int:
    """GPUs the driver sees (0 when there is no driver or no device)."""
    try:
        cuda.init()
        return cuda.Device.count()
    except cuda.Error:
        return 0


class CudaDevice:
    """One GPU (or MIG instance) and its retained primary context."""

    def __init__(self, device: cuda.Device, context: cuda.Context, device_id: int):
        self.device = device
        self.device_id = device_id
        self._context: cuda.Context | None = context
        self._lock = threading.Lock()
        self.name = device.name()
        self.compute_capability: tuple[int, int] = device.compute_capability()

    @classmethod
    def open(cls, device_id: int = 0) -> CudaDevice:
        """Retain device `device_id`'s primary context; CudaError if there is no such GPU."""
        cuda_call("initialising the CUDA driver", cuda.init)
        count = cuda_call("counting CUDA devices", cuda.Device.count)
        if not 0 <= device_id < count:
            raise CudaError(f"device_id {device_id} does not exist: this machine has {count} CUDA device(s)")
        device = cuda_call(f"opening CUDA device {device_id}", cuda.Device, device_id)
        context = cuda_call(f"retaining the primary context of device {device_id}", device.retain_primary_context)
        return cls(device, context, device_id)

    def active(self) -> _Current:
        """Make the primary context current on this thread for a `with` block."""
        if self._context is None:
            raise CudaError(f"CUDA device {self.device_id} is closed")
        return _Current(self, self._context)

    @property
    def compute_capability_text(self) -> str:
        """E.g. "9.0", as engine sidecars record it."""
        return "{}.{}".format(*self.compute_capability)

    def describe(self) -> str:
        major, minor = self.compute_capability
        return f"{self.name} (device {self.device_id}, compute capability {major}.{minor})"

    def close(self) -> None:
        """Release the retained primary context; idempotent. Free buffers before this."""
        with self._lock:
            context, self._context = self._context, None
        if context is not None:
            context.detach()


class CudaFence:
    """An event recorded on a stream; `synchronize()` returns once the work before it ran."""

    def __init__(self, device: CudaDevice):
        self.device = device
        self.event = cuda_call("creating a CUDA event", cuda.Event, cuda.event_flags.DISABLE_TIMING)
        self._done = True

    def record(self, stream: cuda.Stream) -> CudaFence:
        self._done = False
        cuda_call("recording a CUDA event", self.event.record, stream)
        return self

    def synchronize(self) -> None:
        if self._done:  # both slots of a job share a fence: the second wait is free
            return
        try:
            with self.device.active():
                cuda_call("waiting for the GPU", self.event.synchronize)
        finally:
            # A wait that failed (the device lost) is not asked again by every buffer
            # behind the fence: the error is raised once, to whoever waited first.
            self._done = True

    def passed(self) -> None:
        # No driver call: the host need not give up the interpreter lock to learn it.
        self._done = True


class _Current:
    """`CudaDevice.active()`'s context manager: push on entry, pop on exit. A class, not a
    generator-based contextmanager, because the hot path enters it a few times per batch."""

    __slots__ = ("device", "context")

    def __init__(self, device: CudaDevice, context: cuda.Context):
        self.device = device
        self.context = context

    def __enter__(self) -> CudaDevice:
        cuda_call("making the primary context current", self.context.push)
        return self.device

    def __exit__(self, *exc: object) -> None:
        cuda.Context.pop()
