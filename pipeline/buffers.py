"""Pools of reusable model-input buffers (host memory), lent as `TensorSlot`s.

Bottom layer. Ownership: the preprocess stage acquires a slot and writes the model input
into it; the slot travels with the job; the infer stage releases it once the backend has
consumed it (or `Job.settle` releases it when the job is settled early). Nothing is
allocated per frame. A GPU pool with the same acquire/release shape lives with the GPU
code.
"""

from __future__ import annotations

import queue
from typing import Any

import numpy as np

from pipeline.messages import TensorSlot


class SlotPool:
    """Lends a fixed set of buffers, made once by the subclass, as `TensorSlot`s."""

    def __init__(self, buffers: list[Any]) -> None:
        self.count = len(buffers)
        self._free: queue.SimpleQueue[TensorSlot] = queue.SimpleQueue()
        for buffer in buffers:
            self._free.put(TensorSlot(buffer, self._free.put))

    def acquire(self, timeout_s: float) -> TensorSlot | None:
        """A free slot, or None if none was returned within `timeout_s`."""
        try:
            return self._free.get(timeout=timeout_s).lend()
        except queue.Empty:
            return None

    @property
    def available(self) -> int:
        return self._free.qsize()


class HostSlotPool(SlotPool):
    """`count` arrays of `shape`/`dtype`, allocated once."""

    def __init__(self, shape: tuple[int, ...], dtype: np.dtype | type, count: int):
        self.shape = shape
        super().__init__([np.zeros(shape, dtype) for _ in range(count)])
