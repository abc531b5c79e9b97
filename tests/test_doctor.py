"""`pipeline doctor` on this machine: what it reports, and its exit code for a config
that can run here (0), one that needs what is missing (1), and a file that is no
config (2). Real probes: this CI machine has ONNX Runtime's CPU wheel and no GPU."""

from __future__ import annotations

import pytest

from pipeline.service.cli import main
from tests.pipeline_helpers import ROOT

pytestmark = pytest.mark.timeout(60)


def test_reports_versions_providers_and_what_each_config_kind_needs(capsys):
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("inspection-pipeline ")
    assert "CPUExecutionProvider" in out and "video backends:" in out
    for probe in ("onnxruntime", "ort-cuda", "pycuda", "tensorrt", "aravis", "opencv-video"):
        assert f" {probe} " in out
    assert "model on TensorRT" in out and "genicam cameras" in out


def test_the_demo_config_can_run_here(capsys):
    assert main(["doctor", str(ROOT / "configs" / "demo.yaml")]) == 0
    assert "demo.yaml: can run here" in capsys.readouterr().out


def test_a_config_that_needs_a_missing_part_exits_1_with_the_install_command(tmp_path, capsys):
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("onnxruntime-gpu is installed here: nothing the CUDA config needs is missing")
    config = tmp_path / "cuda.yaml"
    config.write_text((ROOT / "configs" / "demo.yaml").read_text()
                      .replace("backend: onnxruntime ", "backend: onnxruntime-cuda ")
                      .replace("../engines/demo.onnx", str(ROOT / "engines" / "demo.onnx")))
    assert main(["doctor", str(config)]) == 1
    out = capsys.readouterr().out
    assert "cuda.yaml: cannot run here" in out and "pip install onnxruntime-gpu" in out


def test_a_file_that_is_no_config_exits_2(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("cameras: 3\n")
    assert main(["doctor", str(bad)]) == 2
    assert "bad.yaml: cannot run here" in capsys.readouterr().out
