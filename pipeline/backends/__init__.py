"""Inference backends: an explicit registry from config name to implementation.

Owns choosing and constructing the `InferenceBackend` for a `ModelConfig`. Each entry is
imported only when chosen, so `tensorrt`/`pycuda` (and ONNX Runtime itself) are never
imported by `import pipeline.backends`. Backend "auto" picks TensorRT when it imports and
a GPU is present, else ONNX Runtime on CUDA when that provider is installed, else CPU.
ONNX Runtime on CUDA means the zero-copy IO-binding backend (`onnxruntime-cuda`) when
pycuda imports, else the plain session on the CUDA provider with host buffers. Backend
"triton" is a model served by a Triton Inference Server (docs/SCALING.md); "auto" never
picks it.
"""

from __future__ import annotations

import ctypes
import importlib
import logging

from pipeline.backends.base import InferenceBackend, ModelError
from pipeline.config.models import BackendKind, ModelConfig

log = logging.getLogger(__name__)

# Config backend name -> "module:Class", imported lazily by `backend_class`.
BACKENDS: dict[str, str] = {
    "onnxruntime": "pipeline.backends.onnxruntime_backend:OnnxRuntimeBackend",
    "onnxruntime-cuda": "pipeline.backends.onnxruntime_cuda:OnnxRuntimeCudaBackend",
    "tensorrt": "pipeline.backends.tensorrt_backend:TensorRTBackend",
    "triton": "pipeline.backends.triton_backend:TritonBackend",  # needs the `triton` extra
}

__all__ = ["BACKENDS", "InferenceBackend", "ModelError", "backend_class", "create_backend"]


def backend_class(name: str) -> type:
    """The class registered under `name`; ModelError if unknown or not importable here."""
    if name not in BACKENDS:
        raise ModelError(f"unknown backend {name!r}; known: {sorted(BACKENDS)}")
    module_name, class_name = BACKENDS[name].split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ModelError(f"backend {name!r} is not available on this machine ({exc})") from exc
    return getattr(module, class_name)


def create_backend(cfg: ModelConfig) -> InferenceBackend:
    """Open the model with the configured (or, for "auto", the best available) backend."""
    kind = BackendKind(cfg.backend)
    if kind is BackendKind.ONNXRUNTIME and cfg.providers[:1] == ("CUDAExecutionProvider",):
        return _onnxruntime_on_cuda(cfg)
    if kind is not BackendKind.AUTO:
        return backend_class(kind.value).from_config(cfg)
    if _tensorrt_usable():
        try:
            backend = backend_class("tensorrt").from_config(cfg)
            log.info("backend auto: chose TensorRT (%s)", backend.name)
            return backend
        except ModelError as exc:
            log.warning("backend auto: TensorRT unusable, falling back to ONNX Runtime: %s", exc)
    return _auto_onnxruntime(cfg)


def _auto_onnxruntime(cfg: ModelConfig) -> InferenceBackend:
    import onnxruntime as ort  # lazily, like every backend dependency

    cls = backend_class("onnxruntime")
    if "CUDAExecutionProvider" in ort.get_available_providers():
        try:
            backend = _onnxruntime_on_cuda(cfg.model_copy(update={"providers": ("CUDAExecutionProvider",)}))
            log.info("backend auto: chose %s", backend.name)
            return backend
        except ModelError as exc:
            log.warning("backend auto: CUDA provider unusable, falling back to CPU: %s", exc)
    backend = cls.from_config(cfg.model_copy(update={"providers": ("CPUExecutionProvider",)}))
    log.info("backend auto: chose %s", backend.name)
    return backend


def _onnxruntime_on_cuda(cfg: ModelConfig) -> InferenceBackend:
    """The zero-copy IO-binding backend, or the host-buffer session when pycuda is missing."""
    try:
        cls = backend_class("onnxruntime-cuda")
    except ModelError as exc:
        log.warning("ONNX Runtime on CUDA without IO binding (host copies each frame): %s", exc)
        return backend_class("onnxruntime").from_config(cfg)
    return cls.from_config(cfg)


def _tensorrt_usable() -> bool:
    try:
        import tensorrt  # noqa: F401  (only probing that it imports)
    except Exception:  # a broken install raises more than ImportError
        return False
    return _cuda_device_count() > 0


def _cuda_device_count() -> int:
    """GPUs the CUDA driver sees, asked through the driver library (no pycuda needed)."""
    for library in ("libcuda.so.1", "libcuda.so", "nvcuda.dll"):
        try:
            cuda = ctypes.CDLL(library)
        except OSError:
            continue
        count = ctypes.c_int(0)
        if cuda.cuInit(0) != 0 or cuda.cuDeviceGetCount(ctypes.byref(count)) != 0:
            return 0
        return count.value
    return 0
