"""Shared helpers for tests that run the real pipeline: configs, an independent
subscriber thread, and the demo model's location.

The pipeline under test is always the real one (real threads, queues, ONNX Runtime,
ZeroMQ sockets); these helpers only build its config and listen to what it publishes.
"""

from __future__ import annotations

import json
import os
import threading
from collections import defaultdict
from pathlib import Path
from typing import Any

import yaml
import zmq

from pipeline.composition.driver import RunDriver, StopReason, Substitutions, Until
from pipeline.config import PipelineConfig, parse_config
from tests.fakes import FaultyBackend

AS_CONFIGURED = Substitutions()
ROOT = Path(__file__).resolve().parents[1]
# The committed demo model; PIPELINE_TEST_MODEL lets a developer point elsewhere.
DEMO_MODEL = Path(os.environ.get("PIPELINE_TEST_MODEL", ROOT / "engines" / "demo.onnx"))
VERDICT_FIELDS = {"schema", "type", "camera_id", "seq", "frame_id", "part_id", "t_capture_ns", "t_capture",
                  "verdict", "reasons", "detections", "latency_ms", "late", "budget_ms"}


def config_dict(endpoint: str, cameras: int = 1, fps: float = 30.0, realtime: bool = True, **top: Any) -> dict:
    cams = [{"id": f"cam{i}", "source": {"kind": "synthetic", "seed": 100 + i, "realtime": realtime,
                                         "defect_probability": 0.5}, "fps": fps} for i in range(cameras)]
    data = {"cameras": cams, "model": {"path": str(DEMO_MODEL), "input_size": 416, "threads": 1},
            "publisher": {"endpoint": endpoint, "heartbeat_ms": 200, "linger_ms": 200, "await_subscriber_ms": 3000},
            "budget_ms": 1000, "http": {"port": 0}}  # port 0: tests never collide on the metrics port
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    if data["model"].get("backend", "onnxruntime") not in ("onnxruntime", "auto"):
        del data["model"]["threads"]  # ONNX Runtime's key: another backend refuses it
    return data


def make_config(endpoint: str, **kw: Any) -> PipelineConfig:
    return parse_config(yaml.safe_dump(config_dict(endpoint, **kw)))


def write_config(path: Path, endpoint: str, **kw: Any) -> Path:
    path.write_text(yaml.safe_dump(config_dict(endpoint, **kw)))
    return path


class VerdictCollector:
    """An independent SUB socket on its own thread, recording every message it gets."""

    def __init__(self, endpoint: str):
        self.context = zmq.Context()
        self.sock = self.context.socket(zmq.SUB)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.RCVTIMEO, 100)
        self.sock.setsockopt(zmq.SUBSCRIBE, b"")
        self.sock.connect(endpoint)
        self.verdicts: dict[str, list[dict]] = defaultdict(list)
        self.heartbeats: list[dict] = []
        self.topics: list[bytes] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                topic, payload = self.sock.recv_multipart()
            except zmq.Again:
                continue
            msg = json.loads(payload)
            self.topics.append(topic)
            if msg["type"] == "verdict":
                self.verdicts[msg["camera_id"]].append(msg)
            else:
                self.heartbeats.append(msg)

    def wait_for(self, count_per_camera: dict[str, int], timeout_s: float) -> bool:
        end = threading.Event()
        for _ in range(int(timeout_s / 0.05)):
            if all(len(self.verdicts[c]) >= n for c, n in count_per_camera.items()):
                return True
            end.wait(0.05)
        return False

    def wait_for_heartbeat(self, timeout_s: float, matching=lambda hb: True) -> dict | None:
        """The first heartbeat (from now on) for which `matching(heartbeat)` is true, or None."""
        seen, end = len(self.heartbeats), threading.Event()
        for _ in range(int(timeout_s / 0.05)):
            for heartbeat in self.heartbeats[seen:]:
                if matching(heartbeat):
                    return heartbeat
            end.wait(0.05)
        return None

    def wait_for_last_heartbeat(self, timeout_s: float) -> bool:
        """True once the pipeline's last heartbeat (health STOPPING, sent after its last verdict) is in."""
        end = threading.Event()
        for _ in range(int(timeout_s / 0.05)):
            if any(hb["health"] == "STOPPING" for hb in self.heartbeats):
                return True
            end.wait(0.05)
        return False

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()
        self.context.term()


def assert_exactly_once(verdicts: list[dict], frames: int) -> None:
    """Contiguous seq from 0 and every frame id exactly once."""
    assert [v["seq"] for v in verdicts] == list(range(len(verdicts))), "seq must be contiguous from 0"
    frame_ids = sorted(v["frame_id"] for v in verdicts)
    assert frame_ids == list(range(frames)), f"expected frames 0..{frames - 1} once each, got {len(frame_ids)}"


def started_driver(config: PipelineConfig, frames: int | None = None,
                   substitutions: Substitutions = AS_CONFIGURED) -> RunDriver:
    """The run driver, its pipeline built with `substitutions` and started. A substituted
    FaultyBackend is armed after the build, so its faults land on live frames, not on the
    start-up's warm-up."""
    driver = RunDriver(config, frames, substitutions)
    driver.open()
    if isinstance(substitutions.backend, FaultyBackend):
        substitutions.backend.arm()
    driver.start()
    return driver


def run_to_end(config: PipelineConfig, frames: int, substitutions: Substitutions = AS_CONFIGURED) -> RunDriver:
    """`frames` per camera through the run driver until every capture ended, then stopped
    (`driver.stop()` returns the exit code again)."""
    driver = started_driver(config, frames, substitutions)
    assert driver.run(Until(duration_s=60)) is StopReason.ENDED
    driver.stop(timeout_s=10)
    return driver


def run_bayer_camera_pipeline(endpoint: str, frames: int, raw_slots_allocator: Any = None, lend: bool = True,
                              **model: Any):
    """The real pipeline with one Bayer camera (tests.fakes.BayerCamera over a synthetic
    source, pattern GB), configured as the GenICam camera it stands for, so its frame
    slots take that camera's layout. `raw_slots_allocator` replaces the frame allocator
    (e.g. np.empty: one-byte raw slots on the CPU path, for the CPU letterbox to demosaic).
    `lend=False`: no slots, so the camera demosaics each frame itself with OpenCV (the
    reference). Returns (pipeline, verdicts of cam0)."""
    from pipeline.composition.app import Pipeline
    from pipeline.composition.assembly import build_parts
    from pipeline.core.messages import BayerPattern
    from tests.fakes import BayerCamera

    built = make_config(endpoint, fps=200, realtime=False, model={"input_size": 416, **model})
    data = config_dict(endpoint, fps=200, realtime=False, model={"input_size": 416, **model})
    data["cameras"][0]["source"] = {"kind": "genicam", "address": "127.0.0.1", "pixel_format": "BayerGB8"}
    as_camera = parse_config(yaml.safe_dump(data))
    parts = build_parts(built)  # opens the synthetic source, which the fake then wraps
    parts.sources = {"cam0": BayerCamera(parts.sources["cam0"], BayerPattern.GB)}
    if raw_slots_allocator is not None:
        parts.frame_allocator = raw_slots_allocator
    parts.lend_frame_slots = lend
    collector = VerdictCollector(endpoint)
    try:
        pipeline = Pipeline(as_camera, parts, max_frames=frames)
        pipeline.start()
        pipeline.captures[0].thread.join(60)
        assert pipeline.shutdown(timeout_s=10) == 0
        assert collector.wait_for({"cam0": frames}, timeout_s=30)  # published already; read late on a loaded machine
    finally:
        collector.close()
    return pipeline, collector.verdicts["cam0"]
