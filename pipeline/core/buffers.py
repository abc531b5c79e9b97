"""Pools of reusable buffers (host memory), lent as `TensorSlot`s: model inputs and frames.

Bottom layer. Ownership of a model-input slot: the preprocess stage acquires it and
writes the model input into it; the slot travels with the job; the infer stage releases
it once the backend has consumed it (or `Job.settle` releases it when the job is settled
early). Ownership of a frame slot (`FramePool`): the capture stage acquires one per
frame and lends it to its source, which writes the image into it; it travels with the
job (`Job.frame_slot`) and is released once the image has been read: by the preprocess
stage after a host transform, by the infer stage after the run whose stream waited on
the upload (GPU path), or by `Job.settle`. Nothing is allocated per frame. The GPU path
makes its frame pools page-locked (the allocator is injected), so the upload is one
asynchronous DMA straight from the slot. A GPU pool of model inputs with the same
acquire/release shape lives with the GPU code. A backend's host output buffers
(`OutputRing`): the backend writes a run's output into one and lends it; the decide
stage gives it back once the batch is decoded (`pipeline.core.messages.RawBatch`).
"""

from __future__ import annotations

import queue
from typing import Any, Callable

import numpy as np

from pipeline.core.messages import TensorSlot


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


Allocator = Callable[[tuple[int, ...], type], np.ndarray]


class FramePool(SlotPool):
    """`count` uint8 frame buffers of `shape` (HxWx3 or HxW) from `allocate`, made once.

    `owns(image)` tells whether an image lives in one of them (e.g. whether it is
    page-locked, when the allocator was the GPU's pinned one)."""

    def __init__(self, shape: tuple[int, ...], count: int, allocate: Allocator = np.empty, pinned: bool = False):
        self.shape = tuple(shape)
        self.pinned = pinned
        buffers = [allocate(self.shape, np.uint8) for _ in range(count)]
        self._addresses = frozenset(b.__array_interface__["data"][0] for b in buffers)
        super().__init__(buffers)

    def owns(self, image: np.ndarray) -> bool:
        return image.__array_interface__["data"][0] in self._addresses and image.shape == self.shape


OUTPUT_RING = 3  # host output buffers: one being decoded, one queued for decide, one being written
OUTPUT_WAIT_S = 5.0  # how long a run waits for decide to give one back before its batch fails


class OutputRing:
    """A backend's host output buffers, lent to the decide stage so the next run can go on.

    A backend writes each run's output into `current()`, the buffer it holds: the one
    still unlent, or the next one given back (waiting up to `wait_s` for the decide stage
    to release one: the infer thread blocks, it never overwrites rows not yet decoded).
    `lend()` hands the caller the buffer of the last run (a `TensorSlot` whose `release()`
    gives it back); a caller that never lends (warm-up, the bench's backend alone, tests)
    gets today's contract: the output is valid until the next run. `count` buffers of
    `shape`/`dtype` from `allocate` (page-locked on the GPU path), made once."""

    def __init__(self, shape: tuple[int, ...], dtype: np.dtype | type, count: int = OUTPUT_RING,
                 wait_s: float = OUTPUT_WAIT_S, allocate: Allocator = np.empty):
        self.count = count
        self.wait_s = wait_s
        self._pool = SlotPool([allocate(tuple(shape), dtype) for _ in range(count)])
        self._held: TensorSlot | None = None  # written by the last run, not lent yet

    def current(self) -> np.ndarray:
        """The buffer the next run writes into; RuntimeError if none came back in time."""
        if self._held is None:
            self._held = self._pool.acquire(self.wait_s)
            if self._held is None:
                raise RuntimeError(f"no host output buffer was given back within {self.wait_s:g} s "
                                   f"(all {self.count} wait to be decoded)")
        array: np.ndarray = self._held.array
        return array

    def lend(self) -> TensorSlot | None:
        """The last run's buffer, now the caller's to release; None if already lent."""
        slot, self._held = self._held, None
        return slot

    @property
    def available(self) -> int:
        return self._pool.available + (self._held is not None)
