"""The GenICam source against Aravis' fake GigE Vision camera on 127.0.0.1 (real GVCP
control and GVSP stream on loopback, opened by address, never by discovery): free-run
and software trigger, pixel formats and ROI, identity checks, and the whole pipeline
with part ids from trigger messages, including triggers that produce no image."""

from __future__ import annotations

import json
import logging
import threading
import time

import cv2
import numpy as np
import pytest

gi = pytest.importorskip("gi", reason="PyGObject (the camera extra) is needed for the GenICam source")
gi.require_version("Aravis", "0.8")
from gi.repository import Aravis  # noqa: E402  (after require_version)

from pipeline.composition.app import Pipeline  # noqa: E402
from pipeline.composition.assembly import build_parts  # noqa: E402
from pipeline.config import parse_config  # noqa: E402
from pipeline.config.cameras import CameraConfig  # noqa: E402
from pipeline.core.buffers import FramePool, HostSlotPool  # noqa: E402
from pipeline.core.messages import BayerPattern, Job  # noqa: E402
from pipeline.core.queues import StageQueue  # noqa: E402
from pipeline.core.telemetry import Telemetry  # noqa: E402
from pipeline.parts.preprocessing.letterbox import Letterboxer  # noqa: E402
from pipeline.parts.sources.aravis_memory import buffer_memory  # noqa: E402
from pipeline.parts.sources.frame_source import CameraState  # noqa: E402
from pipeline.parts.sources.genicam import CameraRefused, GenICamSource  # noqa: E402
from pipeline.stages.capture import CaptureStage  # noqa: E402
from pipeline.stages.preprocess import PreprocessStage  # noqa: E402
from tests.peers import LOOPBACK, Peer, read_frames, reset_fake_camera  # noqa: E402
from tests.pipeline_helpers import VerdictCollector, config_dict  # noqa: E402
from tests.plc import TriggerPush  # noqa: E402

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
    plc = TriggerPush(trigger_endpoint)
    try:
        pipeline.start()
        assert collector.wait_for_heartbeat(timeout_s=5)  # a PLC feeds parts once it hears the pipeline
        for part in parts:
            plc.announce("gige0", part)
            time.sleep(0.05)  # the PLC's part spacing on the belt
        assert collector.wait_for({"gige0": len(parts)}, timeout_s=20)
        assert pipeline.shutdown(timeout_s=5) == 0
    finally:
        plc.close()
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


ROI = (16, 8, 128, 64)  # x, y, width, height: frames are 64 x 128


def test_buffer_memory_reads_the_driver_buffer_in_place(fake_camera):
    camera = Aravis.Camera.new(LOOPBACK)
    stream = camera.create_stream(None, None)
    for _ in range(2):
        stream.push_buffer(Aravis.Buffer.new_allocate(camera.get_payload()))
    camera.start_acquisition()
    try:
        buffer = stream.timeout_pop_buffer(5_000_000)
        assert buffer is not None and buffer.get_status() == Aravis.BufferStatus.SUCCESS
        view = buffer_memory(buffer)
        np.testing.assert_array_equal(view, np.frombuffer(buffer.get_data(), np.uint8))
        assert not view.flags.writeable and not view.flags.owndata  # the driver's memory, not a copy
        stream.push_buffer(buffer)
    finally:
        camera.stop_acquisition()
        del camera, stream  # gives up control of the fake camera: one controller at a time


def read_into_slots(source, slots: list[np.ndarray], timeout_s: float = 10.0) -> list:
    frames, end = [], time.monotonic() + timeout_s
    while len(frames) < len(slots) and time.monotonic() < end:
        got = source.read_into(slots[len(frames)], 0.2)
        if got is not None:
            frames.append(got)
    return frames


@pytest.mark.parametrize("pixel_format, slot, bayer", [
    ("Mono8", (64, 128), None), ("BayerRG8", (64, 128), BayerPattern.RG),
    ("BayerRG8", (64, 128, 3), None), ("RGB8", (64, 128, 3), None),
])
def test_read_into_writes_each_frame_once_into_the_lent_slot(camera_source, pixel_format, slot, bayer):
    source = camera_source(pixel_format=pixel_format, roi=ROI)
    source.open()
    slots = [np.zeros(slot, np.uint8) for _ in range(2)]
    frames = read_into_slots(source, slots)
    assert [f.image is s for f, s in zip(frames, slots)] == [True, True]
    assert [f.bayer for f in frames] == [bayer, bayer]
    assert all(s.any() for s in slots), "the camera's image is in the slot"


def test_a_frame_that_does_not_fit_its_slot_comes_in_its_own_array_said_once(camera_source, caplog):
    source = camera_source(pixel_format="BayerRG8", roi=ROI)
    source.open()
    slot = np.zeros((32, 32), np.uint8)
    with caplog.at_level(logging.WARNING, logger="pipeline.parts.sources.genicam"):
        frames = read_into_slots(source, [slot] * 3)
    assert [f.image.shape for f in frames] == [(64, 128, 3)] * 3 and all(f.bayer is None for f in frames)
    assert not slot.any()
    misfits = [r for r in caplog.records if "frame slots are 32x32" in r.getMessage()]
    assert len(misfits) == 1 and "roi" in misfits[0].getMessage()


def test_a_raw_bayer_frame_travels_from_its_slot_through_capture_and_preprocess(camera_source):
    """The GPU path's layout (one-byte Bayer slots), preprocessed by the CPU Letterboxer:
    the frame keeps its pattern from the camera to the transform."""
    source = camera_source(pixel_format="BayerGB8", roi=ROI)
    pool = FramePool((64, 128), 4, pinned=True)  # page-locked on the GPU path; the flag is what counts here
    telemetry, stop, captured = Telemetry(["gige0"]), threading.Event(), StageQueue("preprocess", 8)
    source.open()
    capture = CaptureStage("gige0", source, captured, telemetry, stop, max_frames=2, frame_pool=pool)
    capture.start()
    capture.thread.join(20)
    jobs = [item for item in captured.drain() if isinstance(item, Job)]
    assert len(jobs) == 2 and all(j.frame_slot is not None and j.frame.image is j.frame_slot.array for j in jobs)
    assert all(j.frame.bayer is BayerPattern.GB for j in jobs)
    mosaics = [j.frame.image.copy() for j in jobs]
    stage = PreprocessStage(Letterboxer((64, 64)), HostSlotPool((3, 64, 64), np.float32, 2), StageQueue("p", 4),
                            StageQueue("i", 4), telemetry, upstreams=1)
    done = stage.handle(jobs)
    assert pool.available == pool.count, "the host transform read the frames: their slots went back"
    for job, raw in zip(done, mosaics):
        expected = np.empty((3, 64, 64), np.float32)
        Letterboxer((64, 64))(cv2.cvtColor(raw, cv2.COLOR_BayerGBRG2BGR), expected)
        np.testing.assert_array_equal(job.tensor.array, expected)
