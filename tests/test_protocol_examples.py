"""The example subscribers of docs/PROTOCOL.md (C, Node, Python), taken from the doc as
written and run against the real demo (`pipeline run`, synthetic camera, demo model):
each prints the verdicts, and a restart of the pipeline across a disconnection, told
from the new run's first heartbeat, before its first verdict.

Needs gcc with libzmq and cJSON headers (.ci/debian-packages.txt) for C, and Node with
npm for Node (`zeromq` installed into a folder of this test run); each skips with the
reason when its tool is missing.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.pipeline_helpers import ROOT, write_config
from tests.waiting import wait_until

pytestmark = pytest.mark.timeout(180)
DOC = ROOT / "docs" / "PROTOCOL.md"


def example(heading: str, lang: str) -> str:
    """The code block in PROTOCOL.md under the `### <heading>` line."""
    text = DOC.read_text()
    match = re.search(rf"^### {re.escape(heading)}.*?^```{lang}\n(.*?)^```", text, re.S | re.M)
    assert match, f"PROTOCOL.md has no {lang} block under '### {heading}'"
    return match.group(1)


class Lines:
    """A subprocess's stdout, line by line, read on a thread."""

    def __init__(self, proc: subprocess.Popen):
        self.proc, self.lines = proc, []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line.strip())

    def wait_for(self, prefix: str, after: int = 0, count: int = 1, timeout_s: float = 30) -> bool:
        return wait_until(lambda: sum(line.startswith(prefix) for line in self.lines[after:]) >= count, timeout_s)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def run_demo(config: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "pipeline", "run", str(config)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def check_example(command: list[str], env: dict, config: Path, endpoint: str) -> None:
    sub = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           env={**os.environ, **env, "PIPELINE_ENDPOINT": endpoint})
    out, demo = Lines(sub), None
    try:
        demo = run_demo(config)
        assert out.wait_for("VERDICT", count=3), f"no verdicts from the first run: {out.lines[-20:]}"
        stop(demo)  # the subscriber stays connected: ZeroMQ reconnects when the next run binds
        assert not any(line.startswith("RESTART") for line in out.lines), out.lines
        before = len(out.lines)
        demo = run_demo(config)
        assert out.wait_for("VERDICT", after=before, count=3), f"no verdicts from the second run: {out.lines[-20:]}"
        second = [line for line in out.lines[before:] if line.startswith(("RESTART", "VERDICT"))]
        assert second[0].startswith("RESTART"), f"restart not told before the new run's first verdict: {second[:5]}"
        assert sum(line.startswith("RESTART") for line in out.lines) == 1, out.lines
        assert not any(line.startswith("GAP") for line in out.lines), out.lines
    finally:
        if demo is not None:
            stop(demo)
        stop(sub)


@pytest.fixture
def demo_config(tmp_path, free_tcp_endpoint):
    config = write_config(tmp_path / "demo.yaml", free_tcp_endpoint, fps=10)
    return config, free_tcp_endpoint


def test_python_example_prints_verdicts_and_tells_a_restart(tmp_path, demo_config):
    script = tmp_path / "subscriber.py"
    script.write_text(example("Python", "python"))
    check_example([sys.executable, str(script)], {}, *demo_config)


def test_c_example_prints_verdicts_and_tells_a_restart(tmp_path, demo_config):
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("gcc is not installed")
    source, binary = tmp_path / "subscriber.c", tmp_path / "subscriber"
    source.write_text(example("C", "c"))
    build = subprocess.run([gcc, "-Wall", "-o", str(binary), str(source), "-lzmq", "-lcjson", "-lm"],
                           capture_output=True, text=True)
    if build.returncode != 0 and ("zmq.h" in build.stderr or "cJSON.h" in build.stderr):
        pytest.skip(f"libzmq or cJSON headers missing (libzmq3-dev, libcjson-dev): {build.stderr[-300:]}")
    assert build.returncode == 0, build.stderr
    check_example([str(binary)], {}, *demo_config)


@pytest.fixture(scope="session")
def node_modules(tmp_path_factory) -> Path:
    npm, node = shutil.which("npm"), shutil.which("node")
    if npm is None or node is None:
        pytest.skip("node and npm are not installed")
    prefix = tmp_path_factory.mktemp("node")
    install = subprocess.run([npm, "install", "--no-audit", "--no-fund", "--prefix", str(prefix), "zeromq@6"],
                             capture_output=True, text=True, timeout=150)
    if install.returncode != 0:
        pytest.skip(f"npm could not install zeromq: {install.stderr[-300:]}")
    return prefix / "node_modules"


def test_node_example_prints_verdicts_and_tells_a_restart(tmp_path, demo_config, node_modules):
    script = tmp_path / "subscriber.js"
    script.write_text(example("Node", "js"))
    check_example([shutil.which("node"), str(script)], {"NODE_PATH": str(node_modules)}, *demo_config)
