"""The backends' errors, and the `InferenceBackend` protocol (defined in pipeline.contracts) re-exported.

Owns the contract between the infer stage and a runtime (ONNX Runtime, TensorRT): a
host batch (N, 3, h, w) in `input_dtype` (or the batch's slot arrays, which may live on
the GPU) goes in, the raw model output comes back as a host numpy array; decoding it
is `pipeline.backends.yolo_decode`'s job. Backends are
built by `pipeline.backends.create_backend` from a `ModelConfig`.
"""

from __future__ import annotations

from pipeline.contracts import InferenceBackend, RemoteBackend
from pipeline.errors import BackendDeadline, BackendUnavailable, PipelineError


class ModelError(PipelineError):
    """The model cannot be used; the message names the file and what is wrong."""


__all__ = ["BackendDeadline", "BackendUnavailable", "InferenceBackend", "ModelError", "RemoteBackend"]
