"""`model:` for ONNX Runtime: `backend: onnxruntime` (CPU) and `backend: onnxruntime-cuda`.

Owns the keys only ONNX Runtime reads (`threads`; on CUDA also `cuda_graph` and
`cudnn_conv_algo_search`) and the execution providers each backend name stands for.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from pipeline.config.model_common import BackendKind, CudaDeviceKeys, LocalModelSettings

CPU_PROVIDER = "CPUExecutionProvider"
CUDA_PROVIDER = "CUDAExecutionProvider"


class OnnxRuntimeKeys(LocalModelSettings):
    """Keys of every ONNX Runtime session."""

    threads: int = Field(2, ge=0)  # intra-op threads of the CPU provider; 0 = runtime default


class OnnxRuntimeCudaKeys(OnnxRuntimeKeys, CudaDeviceKeys):
    """Keys of ONNX Runtime's CUDA provider (also read by backend auto)."""

    cuda_graph: bool = False
    cudnn_conv_algo_search: Literal["EXHAUSTIVE", "HEURISTIC", "DEFAULT"] = "DEFAULT"


class OnnxRuntimeCpuConfig(OnnxRuntimeKeys):
    """ONNX Runtime on the CPU provider: needs nothing but `pip install .`."""

    backend: Literal[BackendKind.ONNXRUNTIME] = BackendKind.ONNXRUNTIME

    @property
    def providers(self) -> tuple[str, ...]:
        return (CPU_PROVIDER,)


class OnnxRuntimeCudaConfig(OnnxRuntimeCudaKeys):
    """ONNX Runtime's CUDA provider on GPU `device_id` (needs onnxruntime-gpu; with pycuda,
    the zero-copy IO-binding backend, without it the session with host copies)."""

    backend: Literal[BackendKind.ONNXRUNTIME_CUDA] = BackendKind.ONNXRUNTIME_CUDA

    @property
    def providers(self) -> tuple[str, ...]:
        # ONNX Runtime puts a node CUDA cannot run on the CPU provider by itself.
        return (CUDA_PROVIDER,)


OnnxRuntimeConfig = OnnxRuntimeCpuConfig | OnnxRuntimeCudaConfig
