"""Every module that imports tensorrt uses only names that exist, undeprecated, in both
TensorRT 10.13 and 11.4 (TensorRT cannot be installed here: this is its only check).

Runs our shared checker (tests/data/trt/check_trt_usage.py, a copy of
../shared/trt/check_trt_usage.py) against copies of the real API lists dumped from the
binding modules, so CI needs neither TensorRT nor the shared folder."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data" / "trt"
API_LISTS = ["api-10.13.txt", "api-11.4.txt"]


def imports_tensorrt(path: Path) -> bool:
    for node in ast.walk(ast.parse(path.read_text())):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
            [node.module or ""] if isinstance(node, ast.ImportFrom) else []
        if any(n == "tensorrt" or n.startswith("tensorrt.") for n in names):
            return True
    return False


TRT_MODULES = sorted(p for p in (ROOT / "pipeline").rglob("*.py") if imports_tensorrt(p))


def test_the_tensorrt_modules_are_found():
    names = {p.relative_to(ROOT).as_posix() for p in TRT_MODULES}
    assert {"pipeline/parts/backends/tensorrt_backend.py", "pipeline/parts/engines/builder.py"} <= names


@pytest.mark.timeout(60)
@pytest.mark.parametrize("api", API_LISTS)
@pytest.mark.parametrize("module", TRT_MODULES, ids=lambda p: p.name)
def test_tensorrt_usage_is_clean(module, api):
    result = subprocess.run([sys.executable, str(DATA / "check_trt_usage.py"), str(module), str(DATA / api)],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.timeout(60)
def test_the_checker_catches_removed_api(tmp_path):
    bad = tmp_path / "old_style.py"
    bad.write_text("import tensorrt as trt\nb = trt.Builder(trt.Logger())\nc = b.create_builder_config()\n"
                   "c.max_workspace_size = 1 << 30\nc.set_flag(trt.BuilderFlag.FP16)\n")
    result = subprocess.run([sys.executable, str(DATA / "check_trt_usage.py"), str(bad), str(DATA / "api-11.4.txt")],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 1
    assert "max_workspace_size" in result.stdout and "FP16" in result.stdout
