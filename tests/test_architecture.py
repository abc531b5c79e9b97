"""The layering rules of DESIGN.md, enforced: import-linter contracts in pyproject.toml."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.timeout(120)
def test_import_contracts_hold():
    exe = shutil.which("lint-imports") or str(Path(sys.executable).with_name("lint-imports"))
    proc = subprocess.run([exe, "--config", str(ROOT / "pyproject.toml")], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_importing_the_package_needs_no_gpu_or_camera_sdk():
    code = ("import sys, pipeline.composition.app, pipeline.service.cli, pipeline.composition.assembly; "
            "bad = [m for m in ('tensorrt', 'pycuda', 'gi') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_every_folder_of_the_package_is_named_in_architecture_md():
    text = (ROOT / "docs" / "ARCHITECTURE.md").read_text(encoding="utf-8")
    folders = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "pipeline").rglob("*")
                     if p.is_dir() and (p / "__init__.py").is_file())
    missing = [f for f in folders if f"`{f}/`" not in text]
    assert not missing, f"docs/ARCHITECTURE.md does not describe these folders: {missing}"
