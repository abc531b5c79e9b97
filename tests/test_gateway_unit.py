"""systemd/inspection-gateway.service, checked statically like the pipeline's unit."""

from __future__ import annotations

import re
import subprocess
import sys

from tests.test_deployment_files import INSTALL_PREFIX, ROOT, directives, needs_systemd

UNIT = ROOT / "systemd" / "inspection-gateway.service"


def unit_here(tmp_path):
    copy = tmp_path / UNIT.name
    copy.write_text(UNIT.read_text().replace(INSTALL_PREFIX, str(__import__("pathlib").Path(sys.executable).parent.parent)))
    return copy


@needs_systemd
def test_gateway_unit_verifies_and_is_rated_ok(tmp_path):
    unit = unit_here(tmp_path)
    verify = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True)
    assert verify.returncode == 0 and verify.stdout + verify.stderr == ""
    security = subprocess.run(["systemd-analyze", "security", "--offline=true", "--no-pager", str(unit)],
                              capture_output=True, text=True)
    level = re.search(r"Overall exposure level for \S+: ([\d.]+) (\w+)", security.stdout)
    assert level and float(level.group(1)) <= 2.0, security.stdout


def test_gateway_unit_is_notify_with_watchdog_and_config_check():
    d = directives(UNIT.read_text())
    assert d["Type"] == ["notify"] and d["WatchdogSec"] and d["Restart"] == ["on-failure"]
    assert d["ExecStartPre"][0].endswith("pipeline gateway --check /etc/inspection-pipeline/gateway.yaml")
    assert d["ExecStart"][0].endswith("pipeline gateway /etc/inspection-pipeline/gateway.yaml")


def test_check_validates_the_shipped_config():
    done = subprocess.run([sys.executable, "-m", "pipeline", "gateway", "--check", str(ROOT / "configs" / "gateway.yaml")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "OK" in done.stdout, done.stderr
