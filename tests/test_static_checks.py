"""The code habits CI holds (issue 12): ruff and mypy, configured in pyproject.toml, clean.

They run inside the suite so that `.ci/run` (the README's test command) and every landing
fail on a lint or type error, with the checker's own report as the failure message."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True)


@pytest.mark.timeout(120)
def test_ruff_is_clean():
    proc = _run("ruff", "check", "--no-cache", "--output-format", "concise", "pipeline", "tests", "tools")
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.timeout(300)
def test_mypy_is_clean(tmp_path_factory):
    # The cache lives outside the tree so that a stale one can never hide an error.
    cache = tmp_path_factory.getbasetemp() / "mypy-cache"
    proc = _run("mypy", "--cache-dir", str(cache), "--config-file", str(ROOT / "pyproject.toml"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
