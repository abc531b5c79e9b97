"""The `InferenceBackend` protocol every model runtime implements, and `ModelError`.

Owns the contract between the infer stage and a runtime (ONNX Runtime, TensorRT): a
host batch (N, 3, h, w) in `input_dtype` (or the batch's slot arrays, which may live on
the GPU) goes in, the raw model output comes back as a host numpy array; decoding it
is `pipeline.backends.yolo_decode`'s job. Backends are
built by `pipeline.backends.create_backend` from a `ModelConfig`.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from pipeline.messages import ReasonCode


class ModelError(Exception):
    """The model cannot be used; the message names the file and what is wrong."""


class BackendUnavailable(Exception):
    """A remote backend could not answer this batch: server down, refusing, or (with
    `reason_code` DEADLINE) too slow for the parts' budget. The infer stage's base loop
    settles the batch as ERROR with `reason_code`."""

    def __init__(self, message: str, reason_code: ReasonCode = ReasonCode.BACKEND_UNAVAILABLE):
        super().__init__(message)
        self.reason_code = reason_code


@runtime_checkable
class InferenceBackend(Protocol):
    """A loaded model ready to run batches; one thread calls `infer` at a time."""

    name: str  # runtime and device, e.g. "onnxruntime:CPUExecutionProvider"
    input_size: tuple[int, int]  # width, height of the model input
    input_dtype: type  # np.float32 or np.float16
    class_names: tuple[str, ...]
    max_batch: int

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """Run (N, 3, h, w) with N <= max_batch; the raw output, e.g. (N, 4+C, A)."""
        ...

    def infer_tensors(self, tensors: list) -> np.ndarray:
        """Run one batch given as the input slots' arrays: host (3, h, w) arrays for a CPU
        backend, `DeviceTensor`s for a GPU-resident one (no host copy). The returned
        array may be a view the next call overwrites."""
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

    def infer_tensors_within(self, tensors: list, timeout_s: float) -> np.ndarray:
        """`infer_tensors` that gives up after `timeout_s` (BackendUnavailable, DEADLINE)."""
        ...
