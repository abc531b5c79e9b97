"""Gathering a batch's device slots into the model's batch buffer with one kernel launch.

Owns `gather.cu` (compiled once per process and device, like the letterbox kernel; pycuda
keeps the cubin in its on-disk cache) and `SlotGather`, which a GPU backend calls on its
infer stream after the stream's waits on the preprocess events: one launch per batch (per
16 slots) instead of one `memcpy_dtod_async` per slot, each of which costs a driver call
and a Python round trip on the infer thread. The launch is enqueued outside any CUDA
graph, before the graph of that batch size replays on the same stream, so the graph's
fixed input pointer (the batch buffer) is what it writes.

The kernel copies 16-byte words, so it takes slots whose size is a multiple of 16 bytes
(every input of a model with sides divisible by 8; the slots' allocations are aligned);
for other sizes, or if the kernel cannot be compiled here (no nvcc), `SlotGather` falls
back to the per-slot copies, logging why once.
"""

from __future__ import annotations

import logging
import struct
import threading
from collections.abc import Sequence
from importlib import resources

import pycuda.driver as cuda
from pycuda.compiler import SourceModule

from pipeline.parts.gpu.cuda import CudaDevice, CudaError, cuda_call
from pipeline.parts.gpu.device_buffers import DeviceTensor

log = logging.getLogger(__name__)

GATHER_MAX = 16  # slots per launch: the kernel's Sources struct (gather.cu)
BLOCK = (256, 1, 1)
WORD = 16  # bytes per uint4 the kernel copies
BLOCKS_PER_SLOT = 64  # x blocks per slot: 8 slots x 64 blocks fill an H200's 132 SMs several times
_ARG_TYPES = "PQ" + "P" * GATHER_MAX  # see the kernel's signature: batch, words, Sources by value
_functions: dict[int, cuda.Function] = {}
_compile_lock = threading.Lock()
assert struct.calcsize(_ARG_TYPES) == 16 + 8 * GATHER_MAX  # the kernel's parameter layout, no padding


def kernel_source() -> str:
    return resources.files("pipeline.parts.gpu").joinpath("gather.cu").read_text()


def compiled_gather(device: CudaDevice) -> cuda.Function:
    """The prepared `gather_slots` kernel for `device` (compiled on first use)."""
    with _compile_lock:
        function = _functions.get(device.device_id)
        if function is None:
            with device.active():
                module = cuda_call("compiling gather.cu (needs nvcc on first use)", SourceModule, kernel_source(),
                                   no_extern_c=True, options=["-O3"])
            function = module.get_function("gather_slots")
            function.prepare(_ARG_TYPES)
            _functions[device.device_id] = function
    return function


class SlotGather:
    """Copies slots into rows 0..n-1 of `batch` on `stream`: one launch per 16 slots."""

    def __init__(self, device: CudaDevice, batch: DeviceTensor, stream: cuda.Stream):
        self.batch = batch
        self.stream = stream
        self.row_bytes = batch.nbytes // batch.shape[0]
        self._kernel = self._compiled(device)

    def _compiled(self, device: CudaDevice) -> cuda.Function | None:
        if self.row_bytes % WORD:
            log.info("batch rows of %d bytes are not whole 16-byte words: gathering with one copy per slot",
                     self.row_bytes)
            return None
        try:
            return compiled_gather(device)
        except CudaError as exc:
            log.warning("gather kernel unavailable (%s): gathering with one copy per slot", exc)
            return None

    @property
    def one_launch(self) -> bool:
        return self._kernel is not None

    def __call__(self, tensors: Sequence[DeviceTensor]) -> None:
        """Enqueue the copies (the caller holds the device context); nothing waits."""
        if self._kernel is None:
            self._copies(tensors)
            return
        words = self.row_bytes // WORD
        for first in range(0, len(tensors), GATHER_MAX):
            chunk = tensors[first:first + GATHER_MAX]
            pointers = [t.ptr for t in chunk] + [0] * (GATHER_MAX - len(chunk))  # unused rows are never read
            cuda_call("launching the gather kernel", self._kernel.prepared_async_call, (BLOCKS_PER_SLOT, len(chunk)),
                      BLOCK, self.stream, self.batch.ptr + first * self.row_bytes, words, *pointers)

    def _copies(self, tensors: Sequence[DeviceTensor]) -> None:
        for i, t in enumerate(tensors):
            cuda_call("gathering a batch on the GPU", cuda.memcpy_dtod_async,
                      self.batch.ptr + i * self.row_bytes, t.ptr, t.nbytes, self.stream)
