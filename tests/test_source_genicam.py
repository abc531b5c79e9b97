"""The GenICam source against Aravis' fake GigE Vision camera on 127.0.0.1 (real GVCP
control and GVSP stream on loopback, opened by address, never by discovery): free-run
and software trigger, pixel formats and ROI, identity checks, and the whole pipeline
with part ids from trigger messages, including triggers that produce no image."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import zmq

pytest.importorskip("gi", reason="PyGObject (the camera extra) is needed for the GenICam source")

from pipeline.app import Pipeline  # noqa: E402
from pipeline.assembly import build_parts  # noqa: E402
from pipeline.config import parse_config  # noqa: E402
from pipeline.config.models import CameraConfig  # noqa: E402
from pipeline.sources.base import CameraState  # noqa: E402
from pipeline.sources.genicam import CameraRefused, GenICamSource  # noqa: E402
from tests.peers import LOOPBACK, Peer, read_frames, reset_fake_camera  # noqa: E402
from tests.pipeline_helpers import VerdictCollector, config_dict  # noqa: E402

pytestmark = [pytest.mark.camera, pytest.mark.timeout(60)]
SERIAL = "PIPE-TEST-01"


@pytest.fixture(scope="module")
def fake_camera():
    with Peer("gige", SERIAL) as peer:
        yield peer


@pytest.fixture
def camera_source(fake_camera):
    """Build a GenICam source for the fake camera; closes it and resets the registers."""
    made: list[GenICamSource] = []

    def make(fps: float = 50.0, **source) -> GenICamSource:
        cam = CameraConfig.model_validate({"id": "gige0", "fps": fps,
                                           "source": {"kind": "genicam", "address": LOOPBACK, **source}})
        made.append(GenICamSource.from_config(cam))
        return made[-1]

    yield make
    for src in made:
        src.close()
    reset_fake_camera(LOOPBACK)



def test_free_run_delivers_mono8_frames_with_camera_timestamps(camera_source):
    source = camera_source(serial=SERIAL, frame_counter_part_ids=True)
    source.open()
    assert source.link_state is CameraState.STREAMING
    frames = read_frames(source, 5)
    assert len(frames) == 5
    assert all(f.image.dtype == np.uint8 and f.image.ndim == 2 and f.image.flags.writeable for f in frames)
    stamps = [f.camera_ts_ns for f in frames]
    assert stamps == sorted(stamps) and len(set(stamps)) == 5
    counters = [int(f.part_id) for f in frames]
    assert counters == sorted(counters), "part ids follow the camera's frame counter"


@pytest.mark.parametrize("pixel_format", ["BayerRG8", "RGB8"])
def test_colour_formats_and_roi_become_bgr_images_of_the_roi_size(camera_source, pixel_format):
    source = camera_source(pixel_format=pixel_format, roi=(16, 8, 128, 64))
    source.open()
    frames = read_frames(source, 2)
    assert [f.image.shape for f in frames] == [(64, 128, 3)] * 2


def test_software_trigger_gives_one_frame_per_trigger(camera_source):
    source = camera_source(trigger="software")
    source.open()
    assert not source.free_running
    assert read_frames(source, 1, timeout_s=0.5) == [], "no frame may come without a trigger"
    got = []
    for _ in range(3):
        assert source.fire_trigger()
        got += read_frames(source, 1, timeout_s=2.0)
    assert len(got) == 3
    assert read_frames(source, 1, timeout_s=0.3) == []


def test_a_camera_with_another_serial_is_refused(camera_source):
    source = camera_source(serial="SOMEONE-ELSE")
    with pytest.raises(CameraRefused, match="SOMEONE-ELSE"):
        source.open()


def test_an_unsupported_pixel_format_names_what_the_camera_offers(camera_source):
    source = camera_source(pixel_format="BGR8")  # the fake camera offers Bayer, Mono and RGB8
    with pytest.raises(CameraRefused, match="Mono8"):
        source.open()


def pipeline_config(endpoint: str, trigger_endpoint: str, trigger: str):
    data = config_dict(endpoint)
    data["cameras"] = [{"id": "gige0", "fps": 50, "trigger_endpoint": trigger_endpoint, "trigger_timeout_s": 0.3,
                        "source": {"kind": "genicam", "address": LOOPBACK, "trigger": trigger, "roi": [0, 0, 160, 120]}}]
    return parse_config(json.dumps(data))


def run_with_triggers(fake_camera, endpoint: str, trigger_endpoint: str, trigger: str, parts: list[str]) -> list[dict]:
    collector = VerdictCollector(endpoint)
    config = pipeline_config(endpoint, trigger_endpoint, trigger)
    pipeline = Pipeline(config, build_parts(config))
    context = zmq.Context()
    push = context.socket(zmq.PUSH)
    push.setsockopt(zmq.LINGER, 0)
    push.connect(trigger_endpoint)
    try:
        pipeline.start()
        assert collector.wait_for_heartbeat(timeout_s=5)  # a PLC feeds parts once it hears the pipeline
        for part in parts:
            push.send_json({"camera": "gige0", "part_id": part})
            time.sleep(0.05)  # the PLC's part spacing on the belt
        assert collector.wait_for({"gige0": len(parts)}, timeout_s=20)
        assert pipeline.shutdown(timeout_s=5) == 0
    finally:
        push.close()
        context.term()
        collector.close()
        reset_fake_camera(LOOPBACK)
    return collector.verdicts["gige0"]


def test_pipeline_inspects_each_announced_part_once_in_software_trigger_mode(fake_camera, free_tcp_endpoint, tmp_path):
    parts = [f"P-{i:03d}" for i in range(8)]
    verdicts = run_with_triggers(fake_camera, free_tcp_endpoint, f"ipc://{tmp_path}/triggers", "software", parts)
    assert sorted(v["part_id"] for v in verdicts) == parts
    assert all(v["verdict"] in ("PASS", "FAIL") for v in verdicts), [
        (v["part_id"], v["verdict"], v["reasons"]) for v in verdicts if v["verdict"] not in ("PASS", "FAIL")]


def test_triggers_that_bring_no_image_get_missed_trigger_verdicts(fake_camera, free_tcp_endpoint, tmp_path):
    """Hardware line trigger that never fires: every announced part still gets a verdict."""
    parts = ["Q-1", "Q-2", "Q-3"]
    verdicts = run_with_triggers(fake_camera, free_tcp_endpoint, f"ipc://{tmp_path}/triggers", "line0", parts)
    assert [v["part_id"] for v in verdicts] == parts
    assert {v["verdict"] for v in verdicts} == {"NOT_INSPECTED"}
    assert verdicts[0]["reasons"][0]["code"] == "missed_trigger"
    assert {v["reasons"][0]["code"] for v in verdicts} <= {"missed_trigger", "source_down"}
