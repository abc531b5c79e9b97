"""Inference backends: an explicit registry from config name to implementation.

Owns choosing and constructing the `InferenceBackend` for a `ModelConfig`. Each entry is
imported only when chosen, so `tensorrt`/`pycuda` (and ONNX Runtime itself) are never
imported by `import pipeline.parts.backends`. Backend "auto" picks TensorRT when it imports and
a GPU is present, else ONNX Runtime on CUDA when that provider is installed, else the CPU
only where `model.allow_cpu_fallback` says so (otherwise start-up fails, naming what each
GPU backend said). What it chose and why is logged and sent in the heartbeat
(`backend_choice`).
ONNX Runtime on CUDA (`backend: onnxruntime-cuda`) means the zero-copy IO-binding backend when
pycuda imports, else the plain session on the CUDA provider with host buffers. Backend
"triton" is a model served by a Triton Inference Server (docs/SCALING.md); "auto" never
picks it.
"""

from __future__ import annotations

import ctypes
import importlib
import logging
from dataclasses import dataclass

from pipeline.config.model import AutoConfig, ModelConfig, OnnxRuntimeCudaConfig
from pipeline.config.model_onnxruntime import CUDA_PROVIDER
from pipeline.parts.backends.backend_api import InferenceBackend
from pipeline.parts.modelfile.model_info import ModelError

log = logging.getLogger(__name__)

# Config backend name -> "module:Class", imported lazily by `backend_class`. Backend
# onnxruntime-cuda falls back to the plain session class when pycuda is missing.
BACKENDS: dict[str, str] = {
    "onnxruntime": "pipeline.parts.backends.onnxruntime_backend:OnnxRuntimeBackend",
    "onnxruntime-cuda": "pipeline.parts.backends.onnxruntime_cuda:OnnxRuntimeCudaBackend",
    "tensorrt": "pipeline.parts.backends.tensorrt_backend:TensorRTBackend",
    "triton": "pipeline.parts.backends.triton_backend:TritonBackend",  # needs the `triton` extra
}

__all__ = ["BACKENDS", "BackendChoice", "InferenceBackend", "ModelError", "backend_class", "choose_backend", "create_backend"]


def backend_class(name: str) -> type:
    """The class registered under `name`; ModelError if unknown or not importable here."""
    if name not in BACKENDS:
        raise ModelError(f"unknown backend {name!r}; known: {sorted(BACKENDS)}")
    module_name, class_name = BACKENDS[name].split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ModelError(f"backend {name!r} is not available on this machine ({exc})") from exc
    return getattr(module, class_name)  # the registry names the class: a lookup, not a probe


@dataclass(frozen=True)
class BackendChoice:
    backend: InferenceBackend
    why: str  # e.g. "auto: TensorRT imports and a CUDA GPU is present"; "configured"


def create_backend(cfg: ModelConfig) -> InferenceBackend:
    """Open the model with the configured (or, for "auto", the best available) backend."""
    return choose_backend(cfg).backend


def choose_backend(cfg: ModelConfig) -> BackendChoice:
    """The backend `cfg` asks for, and why it is that one."""
    if isinstance(cfg, OnnxRuntimeCudaConfig):
        return BackendChoice(_onnxruntime_on_cuda(cfg), "configured")
    if not isinstance(cfg, AutoConfig):
        return BackendChoice(backend_class(cfg.backend.value).from_config(cfg), "configured")
    tried: list[str] = []
    if _tensorrt_usable():
        try:
            return _chose(backend_class("tensorrt").from_config(cfg.tensorrt()),
                          "TensorRT imports and a CUDA GPU is present")
        except ModelError as exc:
            tried.append(f"TensorRT unusable: {exc}")
    else:
        tried.append("TensorRT not installed or no CUDA GPU")
    return _auto_onnxruntime(cfg, tried)


def _auto_onnxruntime(cfg: AutoConfig, tried: list[str]) -> BackendChoice:
    import onnxruntime as ort  # lazily, like every backend dependency

    if CUDA_PROVIDER in ort.get_available_providers():
        try:
            return _chose(_onnxruntime_on_cuda(cfg.onnxruntime_cuda()),
                          "; ".join([*tried, "ONNX Runtime has the CUDA provider"]))
        except ModelError as exc:
            tried.append(f"ONNX Runtime's CUDA provider unusable: {exc}")
    else:
        tried.append("ONNX Runtime has no CUDA provider")
    if not cfg.allow_cpu_fallback:
        raise ModelError(f"backend auto found no GPU backend ({'; '.join(tried)}); set model.allow_cpu_fallback: "
                         f"true to run on the CPU, or choose backend: onnxruntime")
    return _chose(backend_class("onnxruntime").from_config(cfg.onnxruntime_cpu()),
                  "; ".join([*tried, "allow_cpu_fallback: CPU"]))


def _chose(backend: InferenceBackend, why: str) -> BackendChoice:
    log.info("backend auto: chose %s (%s)", backend.name, why)
    return BackendChoice(backend, f"auto: {why}")


def _onnxruntime_on_cuda(cfg: OnnxRuntimeCudaConfig) -> InferenceBackend:
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
