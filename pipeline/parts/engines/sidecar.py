"""The sidecar JSON written beside every TensorRT engine, and the checks made on load.

Owns the record of what an engine depends on (TensorRT keeps no user metadata in a
plan): TensorRT version, GPU name and compute capability, the ONNX file's SHA-256, the
precision recipe, the optimization profile, IO names/shapes/dtypes and class names.
`mismatches` compares a recorded sidecar with what the loader sees now and names every
field that differs, so "refuse" can say exactly why and "rebuild" knows it must.
Pure Python: no tensorrt, no pycuda; what crosses the boundary is a JSON file.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from pipeline.core.errors import PipelineError

SCHEMA = 1
# Fields that must equal the loading machine's and model's for a plan to be trusted.
CHECKED_FIELDS = ("schema", "tensorrt_version", "gpu_name", "compute_capability", "onnx_sha256")


class SidecarError(PipelineError):
    """The sidecar is missing or unreadable; the message names the file."""


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple  # the network's declared shape; -1 for a dynamic axis
    dtype: str


@dataclass(frozen=True)
class EngineSidecar:
    tensorrt_version: str
    gpu_name: str
    compute_capability: str  # "9.0"
    onnx_path: str
    onnx_sha256: str
    precision: str  # recipe of the ONNX graph: fp32, fp16 (fp32 IO), int8-qdq, ...
    profile: dict  # {"input": name, "min": [..], "opt": [..], "max": [..]}
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    class_names: tuple[str, ...]
    build: dict = field(default_factory=dict)  # workspace, optimization level, compatibility, timing cache
    schema: int = SCHEMA

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def read(cls, path: Path) -> EngineSidecar:
        try:
            data = json.loads(path.read_text())
            data["inputs"] = tuple(TensorSpec(t["name"], tuple(t["shape"]), t["dtype"]) for t in data["inputs"])
            data["outputs"] = tuple(TensorSpec(t["name"], tuple(t["shape"]), t["dtype"]) for t in data["outputs"])
            data["class_names"] = tuple(data["class_names"])
            return cls(**data)
        except FileNotFoundError:
            raise SidecarError(f"{path}: engine sidecar not found (build engines with `pipeline build-engine`)") from None
        except (OSError, ValueError, TypeError, KeyError) as exc:
            raise SidecarError(f"{path}: unreadable engine sidecar ({type(exc).__name__}: {exc})") from None

    @property
    def max_batch(self) -> int:
        return int(self.profile["max"][0])


def sidecar_path(engine_path: Path) -> Path:
    """engines/demo.engine -> engines/demo.engine.json"""
    return engine_path.with_name(engine_path.name + ".json")


def default_engine_path(onnx_path: Path) -> Path:
    """engines/demo.onnx -> engines/demo.engine"""
    return onnx_path.with_suffix(".engine")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def mismatches(recorded: EngineSidecar, current: dict[str, object]) -> list[str]:
    """One line per checked field whose recorded value differs from `current`'s."""
    found = []
    for name in CHECKED_FIELDS:  # the sidecar's fields by name (a lookup, not a capability probe)
        if name in current and getattr(recorded, name) != current[name]:
            found.append(f"{name}: engine has {getattr(recorded, name)!r}, this machine/model has {current[name]!r}")
    return found
