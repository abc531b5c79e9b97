"""The keys of `model:` that every backend reads, and the names of the backends.

Owns `BackendKind` (the values of `model.backend`), `BackendErrorPolicy` and
`ModelSettings`, the base of each backend's config class (`pipeline.config.model` joins
them into the discriminated union). A backend's own keys live in its own module, so a
key in the wrong backend's section is an unknown key there.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import Field, field_validator, model_validator

from pipeline.config.strict import Strict


class BackendKind(str, Enum):
    AUTO = "auto"  # the best that opens here, chosen at start-up (pipeline.parts.backends.choose_backend)
    ONNXRUNTIME = "onnxruntime"  # ONNX Runtime on the CPU
    ONNXRUNTIME_CUDA = "onnxruntime-cuda"  # ONNX Runtime's CUDA provider, zero-copy IO binding
    TENSORRT = "tensorrt"  # a TensorRT plan built from the ONNX model
    TRITON = "triton"  # a Triton Inference Server; `model.triton` says where


class BackendErrorPolicy(Strict):
    """What the pipeline does when the inference backend raises (lost device, CUDA error).

    Every frame of a failed batch gets an ERROR verdict (`stage_error`) either way. After
    `max_consecutive` failed batches in a row, `exit` stops the daemon with exit code 1
    (systemd restarts it, reopening the device); `continue` keeps trying and reports
    DEGRADED until a batch succeeds again.
    """

    max_consecutive: int = Field(30, ge=1, le=1_000_000)
    action: Literal["exit", "continue"] = "exit"


# The key that chose between ONNX Runtime on the CPU and on CUDA before the backends got
# their own sections; an old config naming it gets told what to write instead.
_REPLACED_KEYS = {
    "providers": "model.providers is replaced by the backend's name: backend onnxruntime runs ONNX Runtime on "
                 "the CPU, backend onnxruntime-cuda on CUDA (docs/GPU.md)",
}


class ModelSettings(Strict):
    """What every backend reads: the model's geometry, decoding and batching."""

    backend: BackendKind  # each backend's class fixes it to its own name
    input_size: tuple[int, int] = (640, 640)  # width, height
    class_names: tuple[str, ...] | None = None  # None: read the ONNX `names` metadata
    confidence: float = Field(0.25, ge=0.0, le=1.0)
    iou: float = Field(0.45, ge=0.0, le=1.0)
    max_detections: int = Field(100, ge=1, le=10000)
    # K: the best anchors by score that enter NMS (Ultralytics' max_nms). Every backend gets
    # them picked in the graph (pipeline.parts.modelfile.candidate_head; a Triton model exported by
    # `pipeline export-triton` carries it) and K x 6 values an image; null: no head, every
    # anchor above `confidence` enters NMS on the host.
    max_candidates: int | None = Field(3000, ge=1, le=100_000)
    max_batch: int = Field(1, ge=1, le=64)
    max_wait_us: int = Field(0, ge=0, le=1_000_000)
    warmup_runs: int = Field(2, ge=0)
    # Where letterboxing runs: "gpu" (the fused CUDA kernel, needs a GPU-resident backend),
    # "cpu" (OpenCV), or "auto" (gpu whenever the chosen backend takes device buffers).
    preprocess: Literal["auto", "cpu", "gpu"] = "auto"
    on_backend_error: BackendErrorPolicy = BackendErrorPolicy()

    @property
    def location(self) -> str:
        """Where the model is, for logs and provenance: a file, or a served model's address."""
        raise NotImplementedError

    @model_validator(mode="before")
    @classmethod
    def _no_replaced_keys(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for key in sorted(_REPLACED_KEYS.keys() & data.keys()):
                raise ValueError(_REPLACED_KEYS[key])
        return data

    @field_validator("input_size", mode="before")
    @classmethod
    def _square_shorthand(cls, value: object) -> object:
        return (value, value) if isinstance(value, int) else value

    @field_validator("input_size")
    @classmethod
    def _multiple_of_32(cls, value: tuple[int, int]) -> tuple[int, int]:
        if any(v % 32 or v <= 0 for v in value):
            raise ValueError("each side must be a positive multiple of 32 (the model's stride)")
        return value


class LocalModelSettings(ModelSettings):
    """Every backend that opens the model file itself (all but Triton)."""

    path: Path

    @property
    def location(self) -> str:
        return str(self.path)


class CudaDeviceKeys(LocalModelSettings):
    """Keys of every backend on a CUDA GPU."""

    device_id: int = Field(0, ge=0)


C = TypeVar("C", bound=ModelSettings)


def converted(source: ModelSettings, target: type[C], **changes: Any) -> C:
    """`source`'s keys that `target` has (with `changes`), validated as `target`: the
    config of another backend for the same model (auto trying each; the bench's
    ONNX Runtime loop for a TensorRT config)."""
    keys = target.model_fields.keys() - {"backend"}
    return target.model_validate({**source.model_dump(include=set(keys)), **changes})
