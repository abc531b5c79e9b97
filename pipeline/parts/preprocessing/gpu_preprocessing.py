"""The GPU preprocess parts of a pipeline: device, fused-kernel transform and slot pool.

Owns opening and closing them together, in the right order. The assembly calls
`GpuPreprocess.open` when the chosen backend takes device buffers; the pipeline's
preprocess stage then gets `transform` (a `GpuLetterboxer`) and `pool` (a
`DeviceSlotPool`), and the pipeline's frame pools get `pinned` (a `PinnedAllocator`) as
their allocator, so frames are uploaded straight from their slots. The device handle here retains the same primary context as the
backend's own, so the slots' pointers are valid for the backend; it is released last,
after the pool and the staging buffers, by `close()`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.parts.gpu.cuda import CudaDevice
from pipeline.parts.gpu.device_buffers import DeviceSlotPool, PinnedAllocator
from pipeline.parts.preprocessing.letterbox_kernel import GpuLetterboxer


@dataclass
class GpuPreprocess:
    device: CudaDevice
    transform: GpuLetterboxer
    pool: DeviceSlotPool
    pinned: PinnedAllocator

    @classmethod
    def open(cls, device_id: int, input_size: tuple[int, int], dtype: np.dtype | type, slots: int) -> GpuPreprocess:
        """Retain the device, compile (or load) the kernel and allocate `slots` input slots."""
        device = CudaDevice.open(device_id)
        try:
            pinned = PinnedAllocator(device)
            transform = GpuLetterboxer(device, input_size, pinned=pinned, fences=2 * slots + 8)
            w, h = input_size
            pool = DeviceSlotPool(device, (3, h, w), dtype, slots)
        except BaseException:
            device.close()
            raise
        return cls(device, transform, pool, pinned)

    def close(self) -> None:
        """Free staging buffers and slots, then release the device; idempotent."""
        self.transform.close()
        self.pool.close()
        self.pinned.close()
        self.device.close()
