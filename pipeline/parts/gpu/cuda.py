"""The CUDA device, its primary context, and the one place CUDA errors become exceptions.

Owns (1) `CudaError` and `cuda_call`, which every CUDA call in the project goes through,
so a failure names what was being done and on which device, and (2) `CudaDevice`, which
retains the device's *primary* context. The primary context is the one the CUDA runtime
API uses, so device pointers allocated here are valid for ONNX Runtime's CUDA provider
and TensorRT without any copy.

What crosses the boundary: a `CudaDevice` is opened once at start-up (`open`) and
released once at shutdown (`close`). CUDA contexts are per thread, so every thread that
touches the GPU wraps its work in `with device.active():` (a push/pop pair, about a
microsecond); the stages' threads do this on every call instead of assuming a context.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

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

    @contextlib.contextmanager
    def active(self) -> Iterator[CudaDevice]:
        """Make the primary context current on this thread for the block."""
        if self._context is None:
            raise CudaError(f"CUDA device {self.device_id} is closed")
        cuda_call("making the primary context current", self._context.push)
        try:
            yield self
        finally:
            cuda.Context.pop()

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
