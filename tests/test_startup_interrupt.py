"""SIGTERM while the daemon is still starting (model load, warm-up, an engine build): a
real `pipeline run` process stops within 5 s, exit 0, without inspecting a single part.

The long start-up is the real `build_parts` followed by a wait that stands for an engine
build (minutes on a GPU; this machine has none), run through `run_pipeline`'s `build`."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

from tests.pipeline_helpers import ROOT, VerdictCollector, write_config

pytestmark = pytest.mark.timeout(120)

SLOW_START = """
import sys, time, logging
from pipeline.composition.assembly import build_parts
from pipeline.config import load_config
from pipeline.service.foreground import run_pipeline
logging.basicConfig(level=logging.INFO)
def slow_build(config):
    parts = build_parts(config)
    print("building the engine", file=sys.stderr, flush=True)
    time.sleep(120)  # the daemon's slow start-up under test (an engine build), not a wait in the test
    return parts
sys.exit(run_pipeline(load_config(sys.argv[1]), build=slow_build))
"""


def test_sigterm_during_start_up_stops_within_5_s_without_inspecting(tmp_path, free_tcp_endpoint):
    config = write_config(tmp_path / "line.yaml", free_tcp_endpoint)
    collector = VerdictCollector(free_tcp_endpoint)
    proc = subprocess.Popen([sys.executable, "-c", SLOW_START, str(config)], cwd=ROOT, stderr=subprocess.PIPE, text=True)
    try:
        seen = ""
        while "building the engine" not in seen:
            line = proc.stderr.readline()
            assert line, f"the daemon ended before its start-up: {seen}"
            seen += line
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=5)
        took = time.monotonic() - t0
        rest = proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
        collector.close()
    assert code == 0, rest
    assert "during start-up, stopping before inspecting anything" in rest
    assert not collector.verdicts, "a part was inspected after SIGTERM"
    print(f"stopped {took:.2f} s after SIGTERM")
