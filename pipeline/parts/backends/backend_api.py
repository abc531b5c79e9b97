"""The backends' errors, and the `InferenceBackend` protocol (defined in pipeline.core.contracts) re-exported.

A model that cannot be used is `pipeline.parts.modelfile.model_info.ModelError`.

Owns the contract between the infer stage and a runtime (ONNX Runtime, TensorRT): a
host batch (N, 3, h, w) in `input_dtype` (or the batch's slot arrays, which may live on
the GPU) goes in, the raw model output comes back as a host numpy array; decoding it
is `pipeline.parts.decoding.yolo_decode`'s job. Backends are
built by `pipeline.parts.backends.create_backend` from a `ModelConfig`.
"""

from __future__ import annotations

from pipeline.core.contracts import InferenceBackend, RemoteBackend
from pipeline.core.errors import BackendDeadline, BackendUnavailable

__all__ = ["BackendDeadline", "BackendUnavailable", "InferenceBackend", "RemoteBackend"]
