"""`pipeline run` and `pipeline subscribe` as a user runs them: two processes, real
sockets, signals and exit codes."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest

from tests.pipeline_helpers import VerdictCollector, write_config
from tests.zmq_helpers import endpoint_in_use

pytestmark = pytest.mark.timeout(120)


def start(*args: str, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "pipeline", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


def test_run_with_subscriber_beside_it_prints_every_verdict(tmp_path, free_tcp_endpoint):
    frames = 20
    config = write_config(tmp_path / "line.yaml", free_tcp_endpoint, cameras=2, fps=20)
    sub = start("subscribe", free_tcp_endpoint, "--count", str(2 * frames), "--timeout", "60")
    run = start("run", str(config), "--frames", str(frames))
    run_out, run_err = run.communicate(timeout=90)
    sub_out, sub_err = sub.communicate(timeout=30)
    assert run.returncode == 0, run_err
    assert sub.returncode == 0, sub_err
    for cam in ("cam0", "cam1"):
        lines = [ln for ln in sub_out.splitlines() if ln.startswith(f"{cam} ")]
        assert [int(ln.split("seq=")[1].split()[0]) for ln in lines] == list(range(frames))
    assert "GAP" not in sub_out
    assert "Traceback" not in run_err
    assert "PASS" in run_err.splitlines()[-1]  # the final status line


def test_sigterm_drains_in_flight_frames_and_exits_0_within_5_s(tmp_path, free_tcp_endpoint):
    config = write_config(tmp_path / "line.yaml", free_tcp_endpoint, cameras=1, fps=30)
    collector = VerdictCollector(free_tcp_endpoint)
    try:
        run = start("run", str(config))
        assert collector.wait_for({"cam0": 10}, timeout_s=60), run.stderr.read() if run.poll() is not None else ""
        run.send_signal(signal.SIGTERM)
        code = run.wait(timeout=5)  # the deadline the test's name promises (TimeoutExpired past it)
        assert collector.wait_for_last_heartbeat(timeout_s=10)
    finally:
        collector.close()
    assert code == 0
    final = collector.heartbeats[-1]
    assert final["health"] == "STOPPING"
    captured = final["cameras"]["cam0"]["frames_captured"]
    verdicts = collector.verdicts["cam0"]
    assert sorted(v["frame_id"] for v in verdicts) == list(range(captured))


def test_run_with_a_missing_model_exits_2_naming_the_file(tmp_path, free_tcp_endpoint):
    config = write_config(tmp_path / "line.yaml", free_tcp_endpoint, model={"path": str(tmp_path / "nope.onnx")})
    run = start("run", str(config), "--frames", "1")
    _, err = run.communicate(timeout=60)
    assert run.returncode == 2 and "nope.onnx" in err and "Traceback" not in err


def test_run_with_an_endpoint_in_use_exits_2(tmp_path, free_tcp_endpoint):
    with endpoint_in_use(free_tcp_endpoint):
        run = start("run", str(write_config(tmp_path / "line.yaml", free_tcp_endpoint)), "--frames", "1")
        _, err = run.communicate(timeout=60)
    assert run.returncode == 2 and free_tcp_endpoint in err and "Traceback" not in err
