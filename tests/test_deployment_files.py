"""The systemd unit and the Dockerfile, checked statically (systemd is never started
here, Docker cannot build here): `systemd-analyze verify` must print nothing,
`systemd-analyze security --offline=true` must rate the unit OK, hadolint must pass."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.config import load_config
from pipeline.config.models import WatchdogConfig
from tests.pipeline_helpers import ROOT

pytestmark = pytest.mark.timeout(60)

UNIT = ROOT / "systemd" / "inspection-pipeline.service"
INSTALL_PREFIX = "/opt/inspection-pipeline/venv"
needs_systemd = pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                                   reason="systemd-analyze not installed (Debian package `systemd`; CI installs it)")


def unit_here(tmp_path: Path) -> Path:
    """The unit with its install prefix pointed at this environment, because verify
    insists that ExecStart= names an existing executable."""
    copy = tmp_path / UNIT.name
    copy.write_text(UNIT.read_text().replace(INSTALL_PREFIX, str(Path(sys.executable).parent.parent)))
    return copy


def directives(text: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.lstrip().startswith(("#", ";", "[")):
            key, value = line.split("=", 1)
            found.setdefault(key.strip(), []).append(value.strip())
    return found


@needs_systemd
def test_unit_verifies_without_a_word(tmp_path):
    result = subprocess.run(["systemd-analyze", "verify", str(unit_here(tmp_path))], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout + result.stderr == ""


@needs_systemd
def test_unit_exposure_is_rated_ok(tmp_path):
    result = subprocess.run(["systemd-analyze", "security", "--offline=true", "--no-pager", str(unit_here(tmp_path))],
                            capture_output=True, text=True)
    level = re.search(r"Overall exposure level for \S+: ([\d.]+) (\w+)", result.stdout)
    assert level, result.stdout + result.stderr
    assert float(level.group(1)) <= 2.0, result.stdout  # docs/OPERATIONS.md reports the figure


def test_unit_is_a_notify_service_with_a_watchdog_and_a_config_check():
    d = directives(UNIT.read_text())
    assert d["Type"] == ["notify"] and d["Restart"] == ["on-failure"]
    assert d["ExecStartPre"][0].endswith("pipeline check-config /etc/inspection-pipeline/line.yaml")
    assert d["ExecStart"][0].endswith("pipeline run /etc/inspection-pipeline/line.yaml")
    watchdog_s = float(d["WatchdogSec"][0])
    assert watchdog_s >= WatchdogConfig().stage_stall_s + 2  # a stall is detected before systemd gives up
    assert d["ProtectSystem"] == ["strict"] and d["NoNewPrivileges"] == ["yes"] and d["LimitMEMLOCK"]
    assert "/dev/nvidiactl rw" in d["DeviceAllow"]
    assert d["SystemCallErrorNumber"] == ["EPERM"]  # a filtered call fails, it does not kill with SIGSYS


def test_dockerfile_passes_hadolint():
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    result = subprocess.run([hadolint, "--no-color", str(ROOT / "Dockerfile")], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout == "", result.stdout + result.stderr


def test_dockerfile_pins_the_tensorrt_base_and_probes_healthz():
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM nvcr\.io/nvidia/tensorrt:\d{2}\.\d{2}-py3$", text, re.M)
    assert 'pip install ".[gpu]"' in text and re.search(r"^USER \d+", text, re.M)
    assert re.search(r'HEALTHCHECK .*\n?.*"pipeline", "health"', text)
    assert 'ENTRYPOINT ["pipeline", "run"]' in text


def constraint_pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, version = line.split("==")
            pins[re.sub(r"[-_.]+", "-", name).lower()] = version
    return pins


def test_the_dockerfile_base_is_a_tensorrt_version_the_static_check_covers():
    from tests.test_trt_static import API_LISTS

    text = (ROOT / "Dockerfile").read_text()
    tag = re.search(r"^FROM nvcr\.io/nvidia/tensorrt:(\d{2}\.\d{2})-py3$", text, re.M).group(1)
    named = re.search(rf"{re.escape(tag)} is TensorRT (\d+\.\d+)", text)
    assert named, "the Dockerfile says which TensorRT its base tag ships"
    assert f"api-{named.group(1)}.txt" in API_LISTS


def test_the_image_installs_onnxruntime_gpu_at_the_shared_pins_and_checks_the_cuda_provider():
    text = (ROOT / "Dockerfile").read_text()
    assert 'pip install ".[gpu]" -c constraints.txt' in text
    assert "pip uninstall -y onnxruntime" in text and "onnxruntime-gpu -c constraints.txt" in text
    assert "'CUDAExecutionProvider' in p" in text and "libonnxruntime_providers_cuda.so" in text
    assert "!constraints.txt" in (ROOT / ".dockerignore").read_text()


def test_every_runtime_and_gpu_dependency_is_pinned_within_pyproject_bounds():
    import tomllib
    from packaging.requirements import Requirement

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = constraint_pins()
    for text in [*project["dependencies"], *project["optional-dependencies"]["gpu"], "onnxruntime-gpu>=1.17"]:
        req = Requirement(text)
        name = re.sub(r"[-_.]+", "-", req.name).lower()
        assert name in pins, f"{req.name} has no pin in constraints.txt"
        assert req.specifier.contains(pins[name], prereleases=True), f"{name}=={pins[name]} is outside {req}"


def test_the_image_holds_the_demo_and_runs_it_on_the_gpu_by_default():
    text = (ROOT / "Dockerfile").read_text()
    ignore = (ROOT / ".dockerignore").read_text()
    assert "COPY configs ./configs" in text and "COPY engines/demo.onnx" in text
    assert "!configs/" in ignore and "!engines/demo.onnx" in ignore
    cmd = re.search(r'^CMD \["/opt/inspection-pipeline/(configs/[\w.-]+)"\]$', text, re.M).group(1)
    config = load_config(ROOT / cmd, require_model=True)  # its model path resolves beside it, as in the image
    assert config.model.backend.value == "onnxruntime-cuda"
    assert load_config(ROOT / "configs" / "demo.yaml").model.backend.value == "onnxruntime"
