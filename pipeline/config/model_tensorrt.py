"""`model:` for `backend: tensorrt`: a TensorRT plan built from the ONNX model.

Owns the keys only the TensorRT backend reads: where the plan is, and what to do when it
does not match this GPU, TensorRT version or model (`engine_mismatch`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pipeline.config.model_common import BackendKind, CudaDeviceKeys


class TensorRTKeys(CudaDeviceKeys):
    """Keys of the TensorRT plan (also read by backend auto)."""

    engine_mismatch: Literal["rebuild", "refuse"] = "refuse"
    # TensorRT plan; None: the model path with .engine (engines/demo.onnx -> engines/demo.engine).
    engine_path: Path | None = None


class TensorRTConfig(TensorRTKeys):
    """A TensorRT plan on GPU `device_id` (`pipeline build-engine` writes it)."""

    backend: Literal[BackendKind.TENSORRT] = BackendKind.TENSORRT
