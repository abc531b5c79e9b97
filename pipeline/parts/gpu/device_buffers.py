"""Device memory allocated once at start-up: model-input slots and pinned host arrays.

Owns `DeviceTensor` (a device allocation with a shape and dtype: what a GPU backend
binds as its input), `DeviceSlotPool` (the GPU twin of `pipeline.core.buffers.HostSlotPool`)
and `PinnedArray` (page-locked host memory, for fast asynchronous copies).

Ownership, as for the host pool: the preprocess stage acquires a slot and the GPU
letterbox kernel writes the model input into it; the slot travels with the job; the
infer stage releases it once the backend has consumed it (or `Job.settle` does, for a
job settled early). The kernel's work is only enqueued: the slot carries the CUDA event
recorded after it (`TensorSlot.fence`); a reader orders its stream after that event,
and `release` waits on it. The pool frees its device memory in `close()`, called once
by whoever built it, after the stages stopped; nothing is freed in `__del__`.

`PinnedAllocator` makes the page-locked frame slots (`pipeline.core.buffers.FramePool`'s
allocator on the GPU path) and frees them all in `close()`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pycuda.driver as cuda

from pipeline.core.buffers import SlotPool
from pipeline.parts.gpu.cuda import CudaDevice, cuda_call


@dataclass(frozen=True)
class DeviceTensor:
    """A C-contiguous array in device memory."""

    allocation: cuda.DeviceAllocation
    shape: tuple[int, ...]
    dtype: np.dtype

    @property
    def ptr(self) -> int:
        return int(self.allocation)

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape)) * self.dtype.itemsize

    @classmethod
    def allocate(cls, shape: tuple[int, ...], dtype: np.dtype | type) -> DeviceTensor:
        dtype = np.dtype(dtype)
        nbytes = max(1, int(np.prod(shape)) * dtype.itemsize)
        allocation = cuda_call(f"allocating {nbytes} bytes of device memory", cuda.mem_alloc, nbytes)
        return cls(allocation, tuple(int(s) for s in shape), dtype)

    def to_host(self) -> np.ndarray:
        """A synchronous copy to a new host array (tests and diagnostics, not the hot path)."""
        out = np.empty(self.shape, self.dtype)
        cuda_call("copying a device tensor to the host", cuda.memcpy_dtoh, out, self.allocation)
        return out

    def free(self) -> None:
        self.allocation.free()


def pinned_array(shape: tuple[int, ...], dtype: np.dtype | type) -> np.ndarray:
    """A page-locked host array (freed when the last reference goes, by pycuda's allocator)."""
    return cuda_call("allocating pinned host memory", cuda.pagelocked_empty, shape, dtype)


class DeviceSlotPool(SlotPool):
    """`count` device tensors of `shape`/`dtype`, allocated once, lent as `TensorSlot`s."""

    def __init__(self, device: CudaDevice, shape: tuple[int, ...], dtype: np.dtype | type, count: int):
        self.device = device
        self.shape = tuple(shape)
        self._tensors: list[DeviceTensor] = []
        with device.active():
            for _ in range(count):
                self._tensors.append(DeviceTensor.allocate(self.shape, dtype))
        super().__init__(self._tensors)

    def close(self) -> None:
        """Free every device buffer; idempotent. Call once the stages have stopped."""
        tensors, self._tensors = self._tensors, []
        if tensors:
            with self.device.active():
                for tensor in tensors:
                    tensor.free()


class PinnedAllocator:
    """Allocates page-locked host arrays for frame pools and frees them in `close()`."""

    def __init__(self, device: CudaDevice):
        self.device = device
        self._arrays: list[np.ndarray] = []
        self._addresses: set[int] = set()

    def __call__(self, shape: tuple[int, ...], dtype: np.dtype | type) -> np.ndarray:
        with self.device.active():
            array = pinned_array(shape, dtype)
        self._arrays.append(array)
        self._addresses.add(array.__array_interface__["data"][0])
        return array

    def owns(self, image: np.ndarray) -> bool:
        """Whether `image` is (the start of) one of these page-locked arrays."""
        return image.__array_interface__["data"][0] in self._addresses and image.flags.c_contiguous

    def close(self) -> None:
        """Free every array handed out; idempotent. Call once the stages have stopped."""
        arrays, self._arrays = self._arrays, []
        self._addresses = set()
        if arrays:
            with self.device.active():
                for array in arrays:
                    array.base.free()
