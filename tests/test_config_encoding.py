"""A config file that is not UTF-8: `check-config` and `run` exit 2 naming the byte
offset, never a traceback; sent with SIGHUP, the running daemon keeps its config."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from tests.pipeline_helpers import ROOT, VerdictCollector, write_config
from tests.test_reload import Daemon

pytestmark = pytest.mark.timeout(120)


def pipeline_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)


@pytest.mark.parametrize("command", [("check-config", "--no-model"), ("check-config",), ("run",)])
def test_a_latin1_comment_is_exit_2_with_the_byte_offset(tmp_path, free_tcp_endpoint, command):
    config = write_config(tmp_path / "line.yaml", free_tcp_endpoint)
    good = config.read_bytes()
    config.write_bytes(good + b"# caf\xe9 line 3\n")
    done = pipeline_cli(*command, str(config))
    assert done.returncode == 2, done.stderr
    assert f"not UTF-8: byte 0xe9 at offset {len(good) + 5}" in done.stderr
    assert "Traceback" not in done.stderr


def test_binary_bytes_are_exit_2_too(tmp_path):
    config = tmp_path / "line.yaml"
    config.write_bytes(b"cameras:\x00\xff\xfe" + os.urandom(64))
    done = pipeline_cli("check-config", "--no-model", str(config))
    assert done.returncode == 2 and "not UTF-8: byte 0xff at offset 9" in done.stderr
    assert "Traceback" not in done.stderr


def test_sighup_with_a_non_utf8_file_keeps_the_running_config(tmp_path, free_tcp_endpoint):
    config = write_config(tmp_path / "line.yaml", free_tcp_endpoint, fps=20)
    collector = VerdictCollector(free_tcp_endpoint)
    daemon = Daemon(config)
    try:
        assert collector.wait_for({"cam0": 5}, 60)
        config.write_bytes(config.read_bytes() + b"# \xe9\n")
        daemon.proc.send_signal(signal.SIGHUP)
        daemon.wait_line("not UTF-8")
        after = len(collector.verdicts["cam0"])
        assert collector.wait_for({"cam0": after + 10}, 60)
        assert daemon.proc.poll() is None, "the daemon died of a reload"
    finally:
        code = daemon.stop()
        collector.close()
    assert code == 0
    log = "".join(line for _, line in daemon.lines)
    assert "reload rejected" in log and "Traceback" not in log
