"""Engine sidecar JSON: round trip, and mismatches named field by field (pure Python;
the TensorRT backend that uses it cannot run here)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.parts.engines.sidecar import (
    EngineSidecar,
    SidecarError,
    TensorSpec,
    default_engine_path,
    mismatches,
    sha256_file,
    sidecar_path,
)


def sidecar(**kw) -> EngineSidecar:
    base = dict(tensorrt_version="10.13.3.9", gpu_name="NVIDIA H100 80GB HBM3", compute_capability="9.0",
                onnx_path="engines/demo.onnx", onnx_sha256="ab" * 32, precision="fp16",
                profile={"input": "images", "min": [1, 3, 416, 416], "opt": [1, 3, 416, 416], "max": [4, 3, 416, 416]},
                inputs=(TensorSpec("images", (-1, 3, 416, 416), "FLOAT"),),
                outputs=(TensorSpec("output0", (-1, 7, 3380), "FLOAT"),), class_names=("scratch", "spot", "crack"),
                build={"workspace_mib": 2048})
    return EngineSidecar(**{**base, **kw})


def test_sidecar_round_trips_through_json(tmp_path):
    path = sidecar_path(tmp_path / "demo.engine")
    assert path.name == "demo.engine.json"
    sidecar().write(path)
    back = EngineSidecar.read(path)
    assert back == sidecar() and back.max_batch == 4


def test_mismatches_name_each_differing_field():
    current = {"tensorrt_version": "11.4.0.106", "gpu_name": "NVIDIA H100 80GB HBM3", "compute_capability": "8.9",
               "onnx_sha256": "ab" * 32}
    found = mismatches(sidecar(), current)
    assert len(found) == 2
    assert found[0].startswith("tensorrt_version: engine has '10.13.3.9', this machine/model has '11.4.0.106'")
    assert found[1].startswith("compute_capability:")
    assert mismatches(sidecar(), {**current, "tensorrt_version": "10.13.3.9", "compute_capability": "9.0"}) == []


def test_missing_or_broken_sidecar_is_named(tmp_path):
    with pytest.raises(SidecarError, match="engine sidecar not found"):
        EngineSidecar.read(tmp_path / "none.engine.json")
    broken = tmp_path / "broken.engine.json"
    broken.write_text('{"tensorrt_version": "10"}')
    with pytest.raises(SidecarError, match=f"{broken}: unreadable engine sidecar"):
        EngineSidecar.read(broken)


def test_default_engine_path_and_hash(tmp_path):
    assert default_engine_path(Path("engines/demo.onnx")) == Path("engines/demo.engine")
    f = tmp_path / "x.bin"
    f.write_bytes(b"abc")
    assert sha256_file(f) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
