"""The one run driver: `pipeline run`, `bench`, `eval` and `soak` each run a few frames
through it (real processes, the demo model, real sockets), and each stop condition ends
a real pipeline with every captured frame published exactly once."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import threading

import cv2
import pytest

from pipeline.composition.app import StartupError
from pipeline.composition.assembly import open_backend
from pipeline.composition.driver import RunDriver, StopReason, Substitutions, Until
from tests.fakes import FaultyBackend
from tests.pipeline_helpers import VerdictCollector, assert_exactly_once, make_config, write_config

pytestmark = pytest.mark.timeout(120)


def command(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline", *args, "--log-level", "INFO"], capture_output=True,
                          text=True, timeout=100)


@pytest.mark.parametrize("argv, reason, verdicts, exit_code", [
    (["run", "{config}", "--frames", "5"], "ended", "5", 0),
    (["eval", "{config}", "--frames", "5"], "ended", "5", 0),
    (["bench", "{config}", "--duration", "0.4", "--warmup", "0.1", "--ring", "2", "--engine-s", "0"], "duration",
     None, 0),
    (["soak", "{config}", "--duration", "1", "--interval", "0.4", "--warmup", "0", "--min-judged", "1", "--out",
      "{out}"], "duration", None, 1),  # 1: a one-second soak cannot be judged, and says so
])
def test_each_entry_point_runs_through_the_driver(tmp_path, free_tcp_endpoint, argv, reason, verdicts, exit_code):
    config = write_config(tmp_path / "line.yaml", free_tcp_endpoint, fps=30)
    done = command(*(a.format(config=config, out=tmp_path / "soak") for a in argv))
    assert done.returncode == exit_code, done.stderr
    stopped = [line for line in done.stderr.splitlines() if "run stopped (" in line]
    assert len(stopped) == 1, done.stderr  # one driver, stopped once
    assert f"run stopped ({reason}): {verdicts or ''}" in stopped[0]
    assert "Traceback" not in done.stderr


class CountingSink:
    """Sets `enough` once `n` verdicts were published."""

    def __init__(self, n: int):
        self.n, self.seen = n, 0
        self.enough = threading.Event()

    def verdict_published(self, published) -> None:
        self.seen += 1
        if self.seen >= self.n:
            self.enough.set()


def drive(config, until: Until, substitutions: Substitutions | None = None):
    """(stop reason, exit code, captured frames, wire verdicts of cam0) of one driven run."""
    collector = VerdictCollector(config.publisher.endpoint)
    driver = RunDriver(config, substitutions=substitutions or Substitutions())
    try:
        driver.open()
        driver.start()
        reason = driver.run(until)
        code = driver.stop(timeout_s=10)
        captured = driver.pipeline.telemetry.cameras["cam0"].frames_captured
        assert collector.wait_for({"cam0": captured}, timeout_s=10)
    finally:
        collector.close()
    return reason, code, captured, collector.verdicts["cam0"]


def test_a_signal_stops_the_run_and_every_captured_frame_is_published(free_tcp_endpoint):
    sink = CountingSink(8)
    config = make_config(free_tcp_endpoint, fps=30)
    reason, code, captured, verdicts = drive(config, Until(signal=sink.enough.is_set), Substitutions(sinks=(sink,)))
    assert (reason, code) == (StopReason.SIGNAL, 0)
    assert captured >= 8
    assert_exactly_once(verdicts, captured)


def test_the_duration_ends_a_run_of_endless_sources(free_tcp_endpoint):
    config = make_config(free_tcp_endpoint, fps=30)
    reason, code, captured, verdicts = drive(config, Until(duration_s=0.5))
    assert (reason, code) == (StopReason.DURATION, 0)
    assert_exactly_once(verdicts, captured)


def test_a_crash_ends_the_run_with_exit_1_and_no_frame_is_lost(free_tcp_endpoint):
    config = make_config(free_tcp_endpoint, fps=30, model={"on_backend_error": {"max_consecutive": 2, "action": "exit"}})
    broken = FaultyBackend(open_backend(config.model), raise_on=range(3, 10**6))
    reason, code, captured, verdicts = drive(config, Until(duration_s=60), Substitutions(backend=broken))
    assert (reason, code) == (StopReason.CRASHED, 1)
    assert_exactly_once(verdicts, captured)
    assert sum(v["verdict"] == "ERROR" for v in verdicts) >= 2


def test_a_custom_build_takes_no_other_substitutions(free_tcp_endpoint):
    config = make_config(free_tcp_endpoint)
    with pytest.raises(ValueError, match="custom build"):
        RunDriver(config, substitutions=Substitutions(sources={}), build=lambda c: None)


class SwitchIntervalSink:
    """Records the interpreter's switch interval, OpenCV's pool size and whether the
    start-up heap is frozen out of the collector while verdicts are published."""

    def __init__(self):
        self.seen: set[float] = set()
        self.cv_threads: set[int] = set()
        self.frozen: set[bool] = set()

    def verdict_published(self, published) -> None:
        self.seen.add(round(sys.getswitchinterval() * 1000, 3))
        self.cv_threads.add(cv2.getNumThreads())
        self.frozen.add(gc.get_freeze_count() > 0)


@pytest.mark.parametrize("runtime, during_ms", [({"switch_interval_ms": 0.7}, 0.7), ({}, 5.0)])
def test_the_run_goes_under_its_process_settings_and_restores_them(free_tcp_endpoint, runtime, during_ms):
    sink = SwitchIntervalSink()
    config = make_config(free_tcp_endpoint, fps=30, runtime=runtime)  # {}: auto, Python's 5 ms on the CPU backend
    before, cv_before = sys.getswitchinterval(), cv2.getNumThreads()
    sys.setswitchinterval(0.002)
    try:
        reason, code, captured, verdicts = drive(config, Until(duration_s=0.5), Substitutions(sinks=(sink,)))
        assert sink.seen == {during_ms} and sys.getswitchinterval() == 0.002
        assert sink.cv_threads == {1} and sink.frozen == {True}
        assert cv2.getNumThreads() == cv_before and gc.get_freeze_count() == 0  # given back at stop
    finally:
        sys.setswitchinterval(before)
    assert_exactly_once(verdicts, captured)


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity") or len(os.sched_getaffinity(0)) < 2,
                    reason="confining threads needs Linux and a machine with more than one CPU to tell it apart")
def test_runtime_cpus_confines_the_capture_and_stage_threads_and_gives_the_caller_its_mask_back(free_tcp_endpoint):
    own = os.sched_getaffinity(0)
    cpu = max(own)
    config = make_config(free_tcp_endpoint, fps=30, runtime={"cpus": [cpu]})
    collector = VerdictCollector(config.publisher.endpoint)
    driver = RunDriver(config)
    try:
        driver.open()
        driver.start()
        threads = [s.thread for s in driver.pipeline.stages] + [c.thread for c in driver.pipeline.captures]
        masks = {t.name: os.sched_getaffinity(t.native_id) for t in threads}
        caller = os.sched_getaffinity(0)
        driver.run(Until(duration_s=0.4))
        driver.stop(timeout_s=10)
        captured = driver.pipeline.telemetry.cameras["cam0"].frames_captured
        assert collector.wait_for({"cam0": captured}, timeout_s=10)
    finally:
        collector.close()
    assert masks == {t.name: {cpu} for t in threads} and len(masks) == 5  # 4 stages, 1 capture
    assert caller == own  # the driver's own thread, and so what it starts later, runs anywhere
    assert_exactly_once(collector.verdicts["cam0"], captured)


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="CPU masks are Linux's")
def test_runtime_cpus_this_machine_lacks_is_refused_before_anything_is_built(free_tcp_endpoint):
    own = os.sched_getaffinity(0)
    missing = max(own) + 1
    config = make_config(free_tcp_endpoint, runtime={"cpus": [min(own), missing]})
    driver = RunDriver(config, build=lambda c: pytest.fail("built despite a CPU the machine lacks"))
    with pytest.raises(StartupError, match=rf"runtime.cpus .*: CPU {missing} is not one this process may run on "
                                            rf"\(it may use [0-9]"):
        driver.open()
