"""Faults injected through public interfaces, checked by what an independent subscriber sees.

The pipeline is the real one (threads, queues, ONNX Runtime, ZeroMQ); only the source or
the backend is wrapped by a fault injector from tests/fakes.py. The promise under test:
every captured frame still gets exactly one verdict, faulty ones an explicit ERROR, and
the pipeline goes on (or stops with exit code 1 where the policy says so).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys

import pytest
import zmq

from pipeline.composition.app import Pipeline
from pipeline.composition.assembly import build_parts, open_backend
from pipeline.composition.driver import Substitutions
from pipeline.core.messages import Job
from pipeline.parts.publishing import ZmqPublisher
from pipeline.parts.sources import create_source
from tests.fakes import FaultyBackend, FaultySource
from tests.pipeline_helpers import (
    AS_CONFIGURED,
    ROOT,
    VerdictCollector,
    assert_exactly_once,
    make_config,
    started_driver,
    write_config,
)
from tests.tmpfs import mounted_tmpfs
from tests.waiting import wait_until

pytestmark = pytest.mark.timeout(120)


def start(config, substitutions: Substitutions = AS_CONFIGURED, max_frames: int | None = None) -> Pipeline:
    """The pipeline built by the run driver with `substitutions`, started."""
    return started_driver(config, max_frames, substitutions).pipeline


def faulty_source(config, faults: dict[int, str]) -> Substitutions:
    """cam0's real source, with `faults` injected."""
    (camera,) = config.cameras
    return Substitutions(sources={camera.id: FaultySource(create_source(camera), faults)})


def faulty_backend(config, **faults) -> Substitutions:
    """The configured model, loaded, with `faults` injected (FaultyBackend's arguments)."""
    return Substitutions(backend=FaultyBackend(open_backend(config.model), **faults))


def run_to_end(config, frames: int, collector: VerdictCollector,
               substitutions: Substitutions = AS_CONFIGURED) -> tuple[Pipeline, int]:
    pipeline = start(config, substitutions, frames)
    for capture in pipeline.captures:
        capture.thread.join(60)
    code = pipeline.shutdown(timeout_s=10)
    assert collector.wait_for({c.id: frames for c in config.cameras}, timeout_s=10)
    return pipeline, code


def run_cam0(endpoint: str, frames: int, substitute=lambda config: AS_CONFIGURED,
             **config_overrides) -> tuple[Pipeline, list[dict]]:
    """cam0 on `endpoint` (make_config's `config_overrides`) run for `frames` frames with the
    parts `substitute(config)` names, to the end; asserts exit code 0 and exactly one verdict
    per frame, and returns the pipeline and cam0's verdicts."""
    collector = VerdictCollector(endpoint)
    try:
        config = make_config(endpoint, **config_overrides)
        pipeline, code = run_to_end(config, frames, collector, substitute(config))
    finally:
        collector.close()
    assert code == 0, "the pipeline must run to the end and exit 0"
    verdicts = collector.verdicts["cam0"]
    assert_exactly_once(verdicts, frames)
    return pipeline, verdicts


def by_frame(verdicts: list[dict]) -> dict[int, dict]:
    return {v["frame_id"]: v for v in verdicts}


def test_bad_source_frames_get_error_verdicts_and_capture_goes_on(free_tcp_endpoint):
    # k-th frame the real source delivers -> fault. "timeout" is no frame at all, so the
    # frame ids after it are one lower than the delivery index.
    faults = {2: "raise", 4: "lost", 6: "timeout", 8: "none_image", 10: "float_image",
              12: "rgba_image", 14: "tiny_image", 16: "not_a_frame"}
    frame_of = {k: k if k < 6 else k - 1 for k in faults if faults[k] != "timeout"}
    frames = 24
    _, verdicts = run_cam0(free_tcp_endpoint, frames, lambda config: faulty_source(config, faults), fps=40)
    seen = by_frame(verdicts)
    bad = set(frame_of.values())
    for frame_id in bad:
        assert seen[frame_id]["verdict"] == "ERROR", seen[frame_id]
        assert seen[frame_id]["reasons"][0]["code"] == "bad_frame"
    assert all(seen[f]["verdict"] != "ERROR" for f in range(frames) if f not in bad)
    details = " ".join(seen[f]["reasons"][0]["detail"] for f in bad)
    for expected in ("RuntimeError", "no image arrived", "NoneType", "float32", "shape", "ndarray"):
        assert expected in details


def test_a_source_that_keeps_raising_is_marked_down_not_flooding_verdicts(free_tcp_endpoint):
    """Three ERROR verdicts for the first three raises, then the camera is DOWN (no
    phantom parts); when the source delivers again, frames continue with the next id."""
    faults = {k: "raise" for k in range(3, 11)}  # eight raises in a row
    frames = 12
    _, verdicts = run_cam0(free_tcp_endpoint, frames, lambda config: faulty_source(config, faults), fps=40)
    # Eight raises, three verdicts: the other five reads were a camera DOWN, not parts.
    errors = [v["frame_id"] for v in verdicts if v["verdict"] == "ERROR"]
    assert errors == [3, 4, 5]


@pytest.mark.parametrize("poison", [float("nan"), float("inf")])
def test_non_finite_model_output_is_an_error_never_a_pass(free_tcp_endpoint, poison):
    frames = 12
    pipeline, verdicts = run_cam0(
        free_tcp_endpoint, frames, lambda config: faulty_backend(config, poison_on={3, 7}, poison=poison), fps=30)
    errors = [v for v in verdicts if v["verdict"] == "ERROR"]
    assert len(errors) == 2 and all(v["reasons"][0]["code"] == "bad_output" for v in errors)
    assert all("NaN" in v["reasons"][0]["detail"] or "inf" in v["reasons"][0]["detail"] for v in errors)
    assert pipeline.parts.backend.calls >= frames - 2  # the other frames were inspected


def test_backend_errors_give_error_verdicts_then_recovery_under_continue(free_tcp_endpoint):
    frames = 16
    # Action continue: run_cam0's exit code 0 says the errors did not stop the pipeline.
    pipeline, verdicts = run_cam0(free_tcp_endpoint, frames, lambda config: faulty_backend(config, raise_on={4, 5, 6}),
                                  fps=30, model={"on_backend_error": {"max_consecutive": 2, "action": "continue"}})
    errors = [v for v in verdicts if v["verdict"] == "ERROR"]
    assert len(errors) == 3
    assert all(v["reasons"][0]["code"] == "stage_error" and "CUDA error 700" in v["reasons"][0]["detail"] for v in errors)
    last_error = max(v["frame_id"] for v in errors)
    assert any(v["verdict"] in ("PASS", "FAIL") for v in verdicts if v["frame_id"] > last_error), "no recovery"
    assert not pipeline.telemetry.stages["infer"].failing


def test_a_backend_that_stays_broken_stops_the_pipeline_with_exit_1(free_tcp_endpoint):
    collector = VerdictCollector(free_tcp_endpoint)
    try:
        config = make_config(free_tcp_endpoint, fps=30,
                             model={"on_backend_error": {"max_consecutive": 3, "action": "exit"}})
        pipeline = start(config, faulty_backend(config, raise_on=range(5, 10**6)))
        assert pipeline.telemetry.crashed.wait(30), "the policy never asked the pipeline to stop"
        code = pipeline.shutdown(timeout_s=10)
        captured = pipeline.telemetry.cameras["cam0"].frames_captured
        assert collector.wait_for({"cam0": captured}, timeout_s=10)
    finally:
        collector.close()
    assert code == 1
    verdicts = collector.verdicts["cam0"]
    assert_exactly_once(verdicts, captured)
    assert sum(v["verdict"] == "ERROR" for v in verdicts) >= 3
    assert not any(v["verdict"] == "PASS" for v in verdicts if v["frame_id"] >= 5)
    assert "failed 3 batches in a row" in " ".join(collector.heartbeats[-1]["errors"])
    assert collector.heartbeats[-1]["health"] == "ERROR"


def test_a_hung_stage_loses_no_job_on_shutdown_and_never_publishes_twice(free_tcp_endpoint):
    collector = VerdictCollector(free_tcp_endpoint)
    backend = None
    try:
        config = make_config(free_tcp_endpoint, fps=30)
        substitutions = faulty_backend(config, hang_on={4})
        backend = substitutions.backend
        assert isinstance(backend, FaultyBackend)
        pipeline = start(config, substitutions)
        assert backend.hanging.wait(30)
        code = pipeline.shutdown(timeout_s=1.5)
        captured = pipeline.telemetry.cameras["cam0"].frames_captured
        assert collector.wait_for({"cam0": captured}, timeout_s=10)
    finally:
        if backend is not None:
            backend.release.set()  # the hung call returns now, long after shutdown
        collector.close()
    infer = next(s for s in pipeline.stages if s.name == "infer")
    infer.thread.join(10)
    assert not infer.thread.is_alive(), "the abandoned stage must end once its call returns"
    assert code == 0
    verdicts = collector.verdicts["cam0"]
    assert_exactly_once(verdicts, captured)
    held = [v for v in verdicts if v["reasons"] and v["reasons"][0]["code"] == "shutdown"]
    assert held and all(v["verdict"] == "ERROR" and "infer" in v["reasons"][0]["detail"] for v in held)
    # The woken stage must not pass its job on: nothing may reach decide's inbox.
    assert not [i for i in pipeline.queues["decide"].drain() if isinstance(i, Job)]


def test_a_stalled_subscriber_costs_drops_at_the_hwm_not_pipeline_progress():
    """XPUB_NODROP over inproc (no kernel buffers): a subscriber that never reads fills the
    HWM at once; the publisher refuses and counts, every frame still gets its verdict."""
    frames = 40
    config = make_config("inproc://verdicts", fps=60,
                         publisher={"sndhwm": 2, "nodrop": True, "await_subscriber_ms": 0})
    parts = build_parts(config)
    stalled = parts.context.socket(zmq.SUB)
    stalled.setsockopt(zmq.RCVHWM, 1)
    stalled.setsockopt(zmq.LINGER, 0)
    stalled.setsockopt(zmq.SUBSCRIBE, b"")
    stalled.connect("inproc://verdicts")
    assert parts.publisher.wait_for_subscriber(5)
    pipeline = Pipeline(config, parts, max_frames=frames)
    try:
        pipeline.start()
        pipeline.captures[0].thread.join(60)
        stalled.close()  # before the context is terminated by shutdown
        code = pipeline.shutdown(timeout_s=10)
    finally:
        stalled.close()
    assert code == 0
    t = pipeline.telemetry
    assert t.cameras["cam0"].verdicts_published == frames  # every frame reached the publisher
    assert t.published_dropped > 0 and isinstance(parts.publisher, ZmqPublisher)
    assert t.published_dropped == parts.publisher.dropped
    assert t.counts["PASS"] + t.counts["FAIL"] + t.counts["NOT_INSPECTED"] == frames


def test_a_stalled_subscriber_does_not_cost_another_subscriber_anything(free_tcp_endpoint):
    """Default XPUB (no NODROP): the HWM drops only for the stalled peer."""
    frames = 60
    context = zmq.Context()
    collector = VerdictCollector(free_tcp_endpoint)  # first, so start-up waits for it
    stalled = context.socket(zmq.SUB)
    try:
        # An HWM of 2 also dropped for the healthy collector on a loaded 2-core machine (the
        # publisher's I/O thread starved); 20 still makes the reader-less peer hit it.
        config = make_config(free_tcp_endpoint, fps=60, publisher={"sndhwm": 20})
        pipeline = start(config, max_frames=frames)
        for option, value in ((zmq.RCVHWM, 1), (zmq.RCVBUF, 4096), (zmq.LINGER, 0)):
            stalled.setsockopt(option, value)
        stalled.setsockopt(zmq.SUBSCRIBE, b"")
        stalled.connect(free_tcp_endpoint)  # and never reads
        pipeline.captures[0].thread.join(60)
        code = pipeline.shutdown(timeout_s=10)
        assert collector.wait_for({"cam0": frames}, timeout_s=30)  # published already; read late on a loaded machine
    finally:
        collector.close()
        stalled.close()
        context.term()
    assert code == 0
    assert_exactly_once(collector.verdicts["cam0"], frames)


def test_sigterm_under_overload_publishes_every_frame_in_flight(tmp_path, free_tcp_endpoint):
    """`pipeline run` with flat-out cameras (queues full), SIGTERM mid-stream: exit 0, and
    every frame captured before the stop has exactly one verdict."""
    config = write_config(tmp_path / "line.yaml", free_tcp_endpoint, cameras=2, realtime=False, budget_ms=100)
    collector = VerdictCollector(free_tcp_endpoint)
    proc = subprocess.Popen([sys.executable, "-m", "pipeline", "--log-level", "WARNING", "run", str(config)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        assert collector.wait_for({"cam0": 40, "cam1": 40}, timeout_s=60), "pipeline never got going"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=15)
        wait_until(lambda: any(h["health"] == "STOPPING" for h in collector.heartbeats), 5, poll_s=0.05)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(5)
        collector.close()
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    final = [h for h in collector.heartbeats if h["health"] == "STOPPING"][-1]
    for cam in ("cam0", "cam1"):
        captured = final["cameras"][cam]["frames_captured"]
        assert final["cameras"][cam]["last_seq"] == captured - 1
        assert_exactly_once(collector.verdicts[cam], captured)
        shed = [v for v in collector.verdicts[cam] if v["verdict"] == "NOT_INSPECTED"]
        assert shed, "flat-out capture must have been shedding when the signal came"


@pytest.fixture
def full_disk(tmp_path):
    """A real 64 kB tmpfs, so writes fail with ENOSPC the way a full disk does."""
    with mounted_tmpfs(tmp_path / "disk", "64k") as mount:
        yield mount


def test_a_full_archive_disk_disables_the_archive_once_and_nothing_else(full_disk, free_tcp_endpoint, caplog):
    frames = 20
    caplog.set_level(logging.WARNING, logger="pipeline.parts.archive")
    pipeline, verdicts = run_cam0(free_tcp_endpoint, frames, fps=30, archive={
        "enabled": True, "path": str(full_disk), "save": ["PASS", "FAIL", "ERROR", "NOT_INSPECTED"]})
    assert pipeline.parts.archive.disabled
    warnings = [r for r in caplog.records if "archive disabled" in r.getMessage()]
    assert len(warnings) == 1 and "full" in warnings[0].getMessage()
    # Frames offered after the writer gave up are no longer named as archived.
    assert "archive" not in verdicts[-1]
