"""`pipeline check-config` refuses every config `pipeline run` refuses, with the same
message and exit 2, and `run` refuses it before it starts anything: real files, real
key files with real modes, real subprocesses."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import yaml

from pipeline.parts.publishing.curve import write_key_pair
from tests.pipeline_helpers import ROOT, config_dict

pytestmark = pytest.mark.timeout(120)


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline", *args], cwd=ROOT, capture_output=True, text=True, timeout=60)


def curve(tmp_path, secret_mode: int = 0o600, drop: str = "") -> dict:
    _, secret = write_key_pair(tmp_path / "keys", "server")
    client, _ = write_key_pair(tmp_path / "keys", "gateway")
    os.chmod(secret, secret_mode)
    if drop == "secret":
        secret.unlink()
    if drop == "malformed":
        secret.write_text("secret-key = \"not a key\"\n")
        os.chmod(secret, 0o600)
    return {"curve": {"server_secret_key_file": str(secret), "allowed_clients": [str(client)]}}


def replay(path) -> list[dict]:
    return [{"id": "cam0", "source": {"kind": "replay", "path": str(path)}, "fps": 10}]


CASES = {
    "endpoint with a port that is not a number": (lambda t: {"publisher": {"endpoint": "tcp://127.0.0.1:abc"}},
                                                  "publisher.endpoint 'tcp://127.0.0.1:abc' is not an endpoint"),
    "endpoint without a scheme": (lambda t: {"publisher": {"endpoint": "127.0.0.1:5555"}},
                                  "publisher.endpoint '127.0.0.1:5555' is not an endpoint"),
    "secret key file missing": (lambda t: {"publisher": curve(t, drop="secret")}, "cannot read secret key file"),
    "secret key file malformed": (lambda t: {"publisher": curve(t, drop="malformed")}, "publisher.curve:"),
    "secret key file mode 0644": (lambda t: {"publisher": curve(t, 0o644)}, "publisher.curve:"),
    "replay folder missing": (lambda t: {"cameras": replay(t / "nowhere")}, "replay path does not exist"),
    "replay folder empty": (lambda t: (t / "empty").mkdir() or {"cameras": replay(t / "empty")},
                            "replay folder has no images"),
    "archive path unwritable": (lambda t: (t / "file").write_text("") or
                                {"archive": {"enabled": True, "path": str(t / "file" / "archive")}},
                                "cannot write there"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_check_config_and_run_refuse_alike_with_exit_2(tmp_path, free_tcp_endpoint, case):
    make, expected = CASES[case]
    data = config_dict(free_tcp_endpoint)
    for key, value in make(tmp_path).items():
        data[key] = {**data.get(key, {}), **value} if isinstance(value, dict) else value
    config = tmp_path / "line.yaml"
    config.write_text(yaml.safe_dump(data))
    checked, ran = cli("check-config", str(config)), cli("run", str(config))
    assert checked.returncode == 2 and expected in checked.stderr, checked.stderr
    assert ran.returncode == 2 and ran.stderr.strip().splitlines()[-1] == checked.stderr.strip().splitlines()[-1]
    assert "Traceback" not in checked.stderr + ran.stderr
