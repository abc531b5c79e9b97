"""A real Triton Inference Server for the tests: the `tritonserver` bundled in the
`nvidia-pytriton` wheel, started from a model repository written by `pipeline export-triton`.

The server's Python backend runs its models in a stub interpreter that must match the
stub's Python (3.13 here; under 3.11 PyTriton's stub fails), so the server gets its own
virtual environment under a cache folder (`PIPELINE_TRITON_CACHE`, default
~/.cache/inspection-pipeline/triton), made once from a pyenv 3.13 interpreter with
nvidia-pytriton (without its numpy<2 pin, which has no 3.13 wheel), numpy and
onnxruntime. `TritonEnvUnavailable` says why when that cannot be done, so tests skip
with the reason. The server binds 127.0.0.1 only, on free ports, and is stopped by pid.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tests.ports import free_port

PYTRITON = "nvidia-pytriton==0.7.0"
STUB_PYTHON = "3.13"
CACHE = Path(os.environ.get("PIPELINE_TRITON_CACHE", Path.home() / ".cache" / "inspection-pipeline" / "triton"))


class TritonEnvUnavailable(Exception):
    """The server's environment cannot be made here; the message says why."""


@dataclass(frozen=True)
class TritonEnv:
    venv: Path  # the 3.13 virtual environment the stub interpreter imports from
    server: Path  # bin/tritonserver + backends/python with the 3.13 stub

    @property
    def libs(self) -> Path:
        return self.venv / "lib" / f"python{STUB_PYTHON}" / "site-packages" / "nvidia_pytriton.libs"


def triton_env() -> TritonEnv:
    """The cached environment, made on first use (minutes: downloads ~100 MB)."""
    venv, server = CACHE / f"venv{STUB_PYTHON}", CACHE / "server"
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / ".lock", "w") as lock:  # two test sessions at once make it once
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (server / "bin" / "tritonserver").is_file():
            _make_venv(venv)
            _assemble_server(venv, server)
    return TritonEnv(venv, server)


def _stub_interpreter() -> Path:
    """pyenv's 3.13 first (its shim on PATH fails unless 3.13 is selected), else PATH's."""
    pyenv_root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    candidates = sorted(pyenv_root.glob(f"versions/{STUB_PYTHON}*/bin/python{STUB_PYTHON}"))
    found = shutil.which(f"python{STUB_PYTHON}")
    for python in [*candidates[-1:], *([Path(found)] if found else [])]:
        if subprocess.run([str(python), "-c", "import venv"], capture_output=True, timeout=60).returncode == 0:
            return python
    raise TritonEnvUnavailable(f"no Python {STUB_PYTHON} interpreter (pyenv or PATH) for Triton's Python backend stub")


def _run(cmd: list[str], what: str, timeout_s: float) -> None:
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise TritonEnvUnavailable(f"{what}: {exc}") from None
    if done.returncode != 0:
        raise TritonEnvUnavailable(f"{what} failed: {done.stderr.strip()[-400:]}")


def _make_venv(venv: Path) -> None:
    python = _stub_interpreter()
    if not (venv / "bin" / "pip").is_file():
        _run([str(python), "-m", "venv", str(venv)], "making the Triton venv", 300)
    pip = [str(venv / "bin" / "pip"), "install", "--quiet", "--disable-pip-version-check"]
    _run([*pip, "--no-deps", PYTRITON], f"pip install {PYTRITON}", 900)
    _run([*pip, "numpy", "onnxruntime"], "pip install numpy onnxruntime (for the stub)", 900)


def _assemble_server(venv: Path, server: Path) -> None:
    """The wheel's server with the 3.13 stub where the Python backend looks for it."""
    bundled = venv / "lib" / f"python{STUB_PYTHON}" / "site-packages" / "pytriton" / "tritonserver"
    if not (bundled / "bin" / "tritonserver").is_file():
        raise TritonEnvUnavailable(f"{bundled}: no tritonserver binary in {PYTRITON}")
    staging = server.with_name("server.partial")
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(bundled / "bin", staging / "bin")
    shutil.copytree(bundled / "backends", staging / "backends")
    shutil.copy(bundled / "python_backend_stubs" / STUB_PYTHON / "triton_python_backend_stub",
                staging / "backends" / "python" / "triton_python_backend_stub")
    staging.rename(server)


class TritonServer:
    """One tritonserver process on loopback; `stop()`/`start()` keep the same ports."""

    def __init__(self, env: TritonEnv, repo: Path, log_path: Path):
        self.env, self.repo, self.log_path = env, repo, log_path
        self.http_port, self.grpc_port, self.metrics_port = free_port(), free_port(), free_port()
        self.process: subprocess.Popen | None = None

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def http_url(self) -> str:
        return f"127.0.0.1:{self.http_port}"

    def start(self, ready_timeout_s: float = 60.0) -> None:
        cmd = [str(self.env.server / "bin" / "tritonserver"), f"--model-repository={self.repo}",
               f"--backend-directory={self.env.server / 'backends'}", "--exit-timeout-secs=3",
               "--http-address=127.0.0.1", "--grpc-address=127.0.0.1", "--metrics-address=127.0.0.1",
               f"--http-port={self.http_port}", f"--grpc-port={self.grpc_port}",
               f"--metrics-port={self.metrics_port}", "--allow-cpu-metrics=false", "--allow-gpu-metrics=false"]
        env = {**os.environ, "LD_LIBRARY_PATH": str(self.env.libs), "PATH": f"{self.env.venv / 'bin'}:{os.environ['PATH']}"}
        with open(self.log_path, "ab") as log:  # the child keeps its own descriptor
            self.process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        if not self.wait_ready(ready_timeout_s):
            tail = self.log_path.read_bytes()[-1500:].decode(errors="replace")
            self.stop()
            raise TritonEnvUnavailable(f"tritonserver not ready within {ready_timeout_s:g} s; log tail:\n{tail}")

    def wait_ready(self, timeout_s: float) -> bool:
        deadline, pause = time.monotonic() + timeout_s, threading.Event()
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                return False
            try:
                with urllib.request.urlopen(f"http://{self.http_url}/v2/health/ready", timeout=1) as r:
                    if r.status == 200:
                        return True
            except OSError:
                pass
            pause.wait(0.1)
        return False

    def kill(self) -> None:
        """SIGKILL: the server vanishes mid-request, as a crashed one would."""
        if self.process is not None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(10)
            self.process = None

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
        self.process = None

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=2) as r:
            return r.read().decode()

    def statistics(self, model: str) -> dict:
        """The model's statistics (per batch size executions) from the HTTP endpoint."""
        import json

        with urllib.request.urlopen(f"http://{self.http_url}/v2/models/{model}/stats", timeout=2) as r:
            return json.loads(r.read())


def export_python_repository(repo: Path, model: Path, max_batch: int = 8, delay_us: int = 2000,
                             name: str = "demo", *extra: str) -> None:
    """`pipeline export-triton --platform python` (with `extra` options), as a user would run it."""
    cmd = [sys.executable, "-m", "pipeline", "export-triton", str(model), str(repo), "--platform", "python",
           "--max-batch", str(max_batch), "--max-queue-delay-us", str(delay_us), "--name", name, *extra]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
