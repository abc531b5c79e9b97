"""Health judged from outcomes: a real ONNX model whose output is NaN on every part's frame
(built here with onnx.helper, run by ONNX Runtime in the real pipeline) must make the
heartbeat DEGRADED with reason bad_output, then ERROR once nothing was inspected for
`health.idle_s` -- never OK while every verdict is ERROR. A model that is NaN already on
the warm-up's blank frame never reaches READY: the start fails naming the file."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from pipeline.composition.app import Pipeline, StartupError
from pipeline.composition.assembly import build_parts
from pipeline.service.daemon.health import HealthMonitor
from tests.pipeline_helpers import VerdictCollector, make_config

pytestmark = pytest.mark.timeout(120)


def nan_model(path, *, everywhere: bool = False) -> None:
    """images [b,3,416,416] -> output0 [b,7,3380] (YOLO layout, 3 classes): NaN for every image
    holding a pixel brighter than 0.5 (every synthetic part), zeros for a blank letterboxed
    frame (the warm-up's, padded with 114/255), or NaN for every image when `everywhere`."""
    nan = numpy_helper.from_array(np.full((1, 7, 3380), np.nan, np.float32), "nan")
    zeros = numpy_helper.from_array(np.zeros((1, 7, 3380), np.float32), "zeros")
    threshold = numpy_helper.from_array(np.array(-1.0 if everywhere else 0.5, np.float32), "threshold")
    axes = numpy_helper.from_array(np.array([1, 2], np.int64), "axes")
    nodes = [helper.make_node("ReduceMax", ["images"], ["m"], axes=[1, 2, 3], keepdims=0),  # [b]
             helper.make_node("Unsqueeze", ["m", "axes"], ["m3"]),  # [b, 1, 1]
             helper.make_node("Greater", ["m3", "threshold"], ["bright"]),
             helper.make_node("Where", ["bright", "nan", "zeros"], ["output0"])]
    graph = helper.make_graph(
        nodes, "nan", [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 3, 416, 416])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, ["batch", 7, 3380])],
        [nan, zeros, threshold, axes])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    helper.set_model_props(model, {"names": "{0: 'scratch', 1: 'spot', 2: 'crack'}", "imgsz": "[416, 416]"})
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def test_a_model_nan_on_a_blank_frame_is_refused_at_start(tmp_path, free_tcp_endpoint):
    nan_model(tmp_path / "nan.onnx", everywhere=True)
    config = make_config(free_tcp_endpoint, fps=30, model={"path": str(tmp_path / "nan.onnx")})
    with pytest.raises(StartupError, match=r"nan\.onnx: the model's output on a blank frame at warm-up is unusable"):
        build_parts(config)


def test_nan_model_output_makes_health_degraded_then_error_never_ok(tmp_path, free_tcp_endpoint):
    nan_model(tmp_path / "nan.onnx")
    config = make_config(free_tcp_endpoint, fps=30, model={"path": str(tmp_path / "nan.onnx")},
                         health={"min_verdicts": 10, "window_s": 60, "idle_s": 2})
    collector = VerdictCollector(free_tcp_endpoint)
    pipeline = Pipeline(config, build_parts(config), max_frames=600)
    monitor = HealthMonitor(stage_stall_s=10)
    try:
        pipeline.start()
        monitor.attach(pipeline.telemetry)
        degraded = collector.wait_for_heartbeat(30, lambda hb: hb["health"] == "DEGRADED")
        report = monitor.check()
        error = collector.wait_for_heartbeat(30, lambda hb: hb["health"] == "ERROR")
        final = monitor.check()
    finally:
        pipeline.stop_event.set()
        pipeline.shutdown(timeout_s=10)
        collector.close()
    verdicts = collector.verdicts["cam0"]
    bad = [v for v in verdicts if v["verdict"] == "ERROR" and v["reasons"][0]["code"] == "bad_output"]
    shed = [v for v in verdicts if v["verdict"] == "NOT_INSPECTED"]  # a loaded machine sheds some
    assert len(bad) >= 10 and len(bad) + len(shed) == len(verdicts), "a NaN output judged as a part"
    ok_after = [hb for hb in collector.heartbeats if hb["health"] == "OK" and hb["cameras"]["cam0"]["verdicts_published"] >= 10]
    assert not ok_after, "health said OK with min_verdicts verdicts in the window, every one ERROR"
    assert degraded is not None and any(r.startswith("bad_output: cam0") for r in degraded["health_reasons"])
    assert not report.healthy and "bad_output" in report.reason
    assert error is not None and any("not inspecting" in r for r in error["health_reasons"])
    assert not final.healthy and final.reason.startswith("error: not inspecting")
