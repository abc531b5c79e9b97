"""`model:` for `backend: auto`: the best backend that opens here, chosen at start-up.

Owns the keys auto reads (those of every backend it may choose, plus
`allow_cpu_fallback`) and turning them into the config of the backend it tries, so each
backend still receives only its own keys. The choosing is `pipeline.parts.backends.choose_backend`.
"""

from __future__ import annotations

from typing import Literal

from pipeline.config.model_common import BackendKind, converted
from pipeline.config.model_onnxruntime import OnnxRuntimeCpuConfig, OnnxRuntimeCudaConfig, OnnxRuntimeCudaKeys
from pipeline.config.model_tensorrt import TensorRTConfig, TensorRTKeys


class AutoConfig(OnnxRuntimeCudaKeys, TensorRTKeys):
    """TensorRT, else ONNX Runtime on CUDA, else (only when allowed) ONNX Runtime on the CPU."""

    backend: Literal[BackendKind.AUTO] = BackendKind.AUTO
    # whether auto may settle for ONNX Runtime on the CPU when no GPU backend opens
    # (false: start-up fails, naming what each GPU backend said).
    allow_cpu_fallback: bool = False

    def tensorrt(self) -> TensorRTConfig:
        return converted(self, TensorRTConfig)

    def onnxruntime_cuda(self) -> OnnxRuntimeCudaConfig:
        return converted(self, OnnxRuntimeCudaConfig)

    def onnxruntime_cpu(self) -> OnnxRuntimeCpuConfig:
        return converted(self, OnnxRuntimeCpuConfig)
