"""`InferenceBackend` on ONNX Runtime (`backend: onnxruntime`, the CPU provider; `onnxruntime-cuda` with host buffers).

Owns opening an ONNX file with the backend's provider and options, validating its
signature (`pipeline.parts.modelfile.model_info`), and running host batches through plain
`session.run`. What crosses the boundary: numpy arrays in and out (`infer_tensors`
takes the infer stage's slot arrays and stacks them into one preallocated batch); the
session is owned by the backend and dropped by `close()`. The GPU-resident variant with
IO binding is `pipeline.parts.backends.onnxruntime_cuda`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from pipeline.config.model_onnxruntime import CUDA_PROVIDER, OnnxRuntimeConfig, OnnxRuntimeCudaConfig
from pipeline.parts.modelfile.candidate_head import headed_model_bytes, raw_output, uses_candidate_head
from pipeline.parts.modelfile.model_info import (
    ModelError,
    ModelSignature,
    check_input,
    host_dtype,
    input_dtype,
    resolve_class_names,
)

log = logging.getLogger(__name__)


class OnnxRuntimeBackend:
    """A validated ONNX Runtime session; see `InferenceBackend`."""

    accepts_device_input = False  # host arrays in

    def __init__(
        self,
        session: ort.InferenceSession,
        class_names: tuple[str, ...],
        input_size: tuple[int, int],
        max_batch: int,
    ):
        self._session: ort.InferenceSession | None = session
        self._input_name = session.get_inputs()[0].name
        self._output_names = [session.get_outputs()[0].name]
        self.name = f"onnxruntime:{session.get_providers()[0]}"
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.input_dtype = ort_input_dtype(session)
        self.class_names = tuple(class_names)
        self.max_batch = int(max_batch)
        self.emits_candidates = has_candidate_head(session)
        self._stacked: np.ndarray | None = None  # batch buffer for max_batch > 1, allocated once

    @classmethod
    def from_config(cls, cfg: OnnxRuntimeConfig) -> OnnxRuntimeBackend:
        """Open `cfg.path` on the backend's provider; ModelError if it is unusable."""
        session = open_session(cfg)
        sig = signature(session, cfg.path)
        check_input(sig, cfg.input_size, cfg.max_batch)
        input_dtype(sig)
        metadata = session.get_modelmeta().custom_metadata_map
        names = resolve_class_names(sig, cfg.class_names, metadata)
        return cls(session, names, cfg.input_size, cfg.max_batch)

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """Run (N, 3, h, w) with N <= max_batch; the raw first output as a numpy array."""
        if self._session is None:
            raise RuntimeError(f"{self.name} backend is closed")
        self._check_batch(batch)
        return self._session.run(self._output_names, {self._input_name: batch})[0]

    def infer_tensors(self, tensors: list[np.ndarray]) -> np.ndarray:
        """Run the slot arrays (3, h, w) of one batch: a view for batch 1, else one copy each."""
        if len(tensors) == 1:
            return self.infer(tensors[0][None])
        if self._stacked is None:
            w, h = self.input_size
            self._stacked = np.empty((self.max_batch, 3, h, w), self.input_dtype)
        if len(tensors) > self.max_batch:
            raise ValueError(f"{len(tensors)} inputs, expected 1..{self.max_batch}")
        for i, tensor in enumerate(tensors):
            self._stacked[i] = tensor
        return self.infer(self._stacked[: len(tensors)])

    def _check_batch(self, batch: np.ndarray) -> None:
        w, h = self.input_size
        n = batch.shape[0] if batch.ndim == 4 else 0
        if batch.shape[1:] != (3, h, w) or not 1 <= n <= self.max_batch or batch.dtype != self.input_dtype:
            raise ValueError(
                f"batch {batch.shape} {batch.dtype} does not fit (1..{self.max_batch}, 3, {h}, {w}) "
                f"{np.dtype(self.input_dtype)}"
            )

    def warmup(self, runs: int) -> None:
        """Run batches of 1 and of max_batch, so both shapes are planned before frames come."""
        w, h = self.input_size
        sizes = sorted({1, self.max_batch})
        dummies = [np.zeros((n, 3, h, w), self.input_dtype) for n in sizes]
        for _ in range(runs):
            for dummy in dummies:
                self.infer(dummy)

    def close(self) -> None:
        # ONNX Runtime frees the session when the last reference goes.
        self._session = None


def has_candidate_head(session: ort.InferenceSession) -> bool:
    """Whether the session's graph ends in the candidate head (its metadata records the raw output)."""
    return raw_output(session.get_modelmeta().custom_metadata_map) is not None


def ort_input_dtype(session: ort.InferenceSession) -> type:
    return host_dtype(session.get_inputs()[0].type)


def open_session(cfg: OnnxRuntimeConfig, cuda_stream: int | None = None) -> ort.InferenceSession:
    """An InferenceSession on exactly the requested providers, or ModelError saying why not.
    `cuda_stream` (a CUstream handle): the CUDA provider computes on that stream.

    With model.max_candidates set, the session runs the graph with the candidate head
    appended in memory (`pipeline.parts.modelfile.candidate_head`): its first output is (N, K, 6).
    """
    path = Path(cfg.path)
    if not path.is_file():
        raise ModelError(f"{path}: model file not found")
    providers = provider_list(cfg)
    model = headed_model_bytes(cfg).model_bytes if uses_candidate_head(cfg) else str(path)
    if cuda_stream is not None:
        providers = [(p, {**o, "has_user_compute_stream": "1", "user_compute_stream": str(cuda_stream)})
                     if p == CUDA_PROVIDER else (p, o) for p, o in providers]
    try:
        session = ort.InferenceSession(model, sess_options=session_options(cfg), providers=providers)
    except Exception as exc:  # ORT raises its own Fail/InvalidGraph/... types for bad files
        raise ModelError(f"{path}: not a usable ONNX model ({type(exc).__name__}: {exc})") from exc
    active = session.get_providers()
    if active[0] != providers[0][0]:
        # ORT silently falls back (e.g. CUDA libraries missing); refuse rather than run slowly.
        raise ModelError(f"{path}: requested {providers[0][0]} but ONNX Runtime could only start {active}")
    return session


def provider_list(cfg: OnnxRuntimeConfig) -> list[tuple[str, dict[str, Any]]]:
    """The backend's providers with their options; ModelError naming one not installed."""
    available = ort.get_available_providers()
    missing = [p for p in cfg.providers if p not in available]
    if missing:
        hint = " (install onnxruntime-gpu: pip install '.[gpu]')" if CUDA_PROVIDER in missing else ""
        raise ModelError(f"{cfg.path}: backend {cfg.backend.value} needs {missing}, which this onnxruntime "
                         f"lacks; it has {available}{hint}")
    return [(p, provider_options(p, cfg)) for p in cfg.providers]


def provider_options(provider: str, cfg: OnnxRuntimeConfig) -> dict[str, Any]:
    if provider == CUDA_PROVIDER and isinstance(cfg, OnnxRuntimeCudaConfig):
        options: dict[str, Any] = {"device_id": cfg.device_id, "cudnn_conv_algo_search": cfg.cudnn_conv_algo_search}
        if cfg.cuda_graph:  # only usable with fixed IO addresses: pipeline.parts.backends.onnxruntime_cuda
            options["enable_cuda_graph"] = "1"
        return options
    return {}


def session_options(cfg: OnnxRuntimeConfig) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.intra_op_num_threads = cfg.threads  # 0 lets ONNX Runtime pick
    # One request at a time runs through the graph; parallelism lives inside operators.
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Its worker threads would spin between runs, taking the cores the other stages'
    # threads need (the pipeline overlaps preprocessing with inference; a loop does not).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def signature(session: ort.InferenceSession, path: Path) -> ModelSignature:
    """The model's single input and raw detection output; ModelError for a multi-input model.

    For a session with the candidate head, the output is the user's raw one (recorded in
    the headed graph's metadata), so the class-count checks see what the model emits."""
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if len(inputs) != 1:
        names = [i.name for i in inputs]
        raise ModelError(f"{path}: model has {len(inputs)} inputs {names}, expected one image input")
    first = outputs[0]
    name, shape = raw_output(session.get_modelmeta().custom_metadata_map) or (first.name, tuple(first.shape))
    return ModelSignature(Path(path), inputs[0].name, tuple(inputs[0].shape), inputs[0].type, name, shape)


def output_tail(session: ort.InferenceSession) -> tuple:
    """The first output's declared shape after the batch axis: (K, 6) with the candidate
    head (always fixed); the raw (4+C, A) without it, where dims may be symbolic."""
    return tuple(session.get_outputs()[0].shape[1:])
