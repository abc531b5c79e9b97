"""`model:`: one config class per backend, chosen by `model.backend`.

Owns the discriminated union `ModelConfig` (a missing `backend` means onnxruntime, as it
always has), so each backend's section holds only the keys that backend reads and a key
under the wrong backend is a config error; and `backends_reading(key)`, which the
loader uses to say which backend a misapplied key belongs to.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Discriminator, Tag, TypeAdapter

from pipeline.config.model_auto import AutoConfig
from pipeline.config.model_common import BackendErrorPolicy, BackendKind, LocalModelSettings, ModelSettings
from pipeline.config.model_onnxruntime import OnnxRuntimeConfig, OnnxRuntimeCpuConfig, OnnxRuntimeCudaConfig
from pipeline.config.model_tensorrt import TensorRTConfig
from pipeline.config.model_triton import TritonConfig, TritonModelConfig

__all__ = ["BACKEND_CONFIGS", "AutoConfig", "BackendErrorPolicy", "BackendKind", "LocalModelSettings", "ModelConfig",
           "ModelSettings", "OnnxRuntimeConfig", "OnnxRuntimeCpuConfig", "OnnxRuntimeCudaConfig", "TensorRTConfig",
           "TritonConfig", "TritonModelConfig", "backends_reading", "model_config"]

BACKEND_CONFIGS: dict[BackendKind, type[ModelSettings]] = {
    BackendKind.ONNXRUNTIME: OnnxRuntimeCpuConfig,
    BackendKind.ONNXRUNTIME_CUDA: OnnxRuntimeCudaConfig,
    BackendKind.TENSORRT: TensorRTConfig,
    BackendKind.TRITON: TritonModelConfig,
    BackendKind.AUTO: AutoConfig,
}


def _backend_tag(value: Any) -> Any:
    """The union's tag: `backend` as written (its default when left out)."""
    if isinstance(value, ModelSettings):
        return value.backend.value
    if isinstance(value, dict):
        tag = value.get("backend", BackendKind.ONNXRUNTIME)
        return tag.value if isinstance(tag, BackendKind) else tag
    return None  # not a mapping: pydantic reports it


ModelConfig = Annotated[
    Annotated[OnnxRuntimeCpuConfig, Tag(BackendKind.ONNXRUNTIME.value)]
    | Annotated[OnnxRuntimeCudaConfig, Tag(BackendKind.ONNXRUNTIME_CUDA.value)]
    | Annotated[TensorRTConfig, Tag(BackendKind.TENSORRT.value)]
    | Annotated[TritonModelConfig, Tag(BackendKind.TRITON.value)]
    | Annotated[AutoConfig, Tag(BackendKind.AUTO.value)],
    Discriminator(_backend_tag),
]

_ADAPTER: TypeAdapter[ModelConfig] = TypeAdapter(ModelConfig)


def model_config(**keys: Any) -> ModelConfig:
    """The config class `keys["backend"]` names, validated as the YAML's `model:` would be."""
    return _ADAPTER.validate_python(keys)


def backends_reading(key: str) -> list[BackendKind]:
    """The backends whose section has `key` (empty for a key no backend reads)."""
    return [kind for kind, cls in BACKEND_CONFIGS.items() if key in cls.model_fields]
