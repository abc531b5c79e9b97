"""Camera pixel formats into frame slots: the slot's shape per camera and path, each
format written once into its slot (the raw mosaic for a one-byte Bayer slot), and the
frames that do not fit their slot."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from pipeline.config.cameras import CameraConfig
from pipeline.core.messages import BayerPattern
from pipeline.parts.sources.pixel_formats import PixelFormatError, into_slot, slot_shape, to_pipeline_image
from tests.pipeline_helpers import assert_exactly_once, run_bayer_camera_pipeline


def genicam(pixel_format: str, roi=None, **camera) -> CameraConfig:
    source = {"kind": "genicam", "address": "127.0.0.1", "pixel_format": pixel_format, "roi": roi}
    return CameraConfig.model_validate({"id": "cam", "source": source, **camera})


@pytest.mark.parametrize("pixel_format, raw_bayer, shape", [
    ("Mono8", False, (480, 640)), ("Mono8", True, (480, 640)),
    ("BayerRG8", True, (480, 640)), ("BayerGB8", True, (480, 640)), ("BayerRG8", False, (480, 640, 3)),
    ("RGB8", True, (480, 640, 3)), ("BGR8", False, (480, 640, 3)),
])
def test_slot_shape_is_one_byte_a_pixel_for_mono8_and_for_bayer_on_the_gpu_path(pixel_format, raw_bayer, shape):
    assert slot_shape(genicam(pixel_format), raw_bayer) == shape


def test_slot_shape_follows_the_roi_and_other_sources_are_bgr():
    assert slot_shape(genicam("BayerBG8", roi=(16, 8, 128, 64)), raw_bayer=True) == (64, 128)
    synthetic = CameraConfig.model_validate({"id": "cam", "width": 320, "height": 200, "source": {"kind": "synthetic"}})
    assert slot_shape(synthetic, raw_bayer=True) == (200, 320, 3)


def mosaic(h: int = 6, w: int = 8) -> np.ndarray:
    return np.random.default_rng(3).integers(0, 256, (h, w), dtype=np.uint8)


@pytest.mark.parametrize("pattern", list(BayerPattern))
def test_a_bayer_frame_stays_raw_in_a_one_byte_slot_and_is_demosaiced_into_a_bgr_one(pattern):
    raw = mosaic()
    one_byte, bgr = np.zeros((6, 8), np.uint8), np.zeros((6, 8, 3), np.uint8)
    image, bayer = into_slot(raw.tobytes(), pattern.value, 8, 6, one_byte)
    assert image is one_byte and bayer is pattern
    np.testing.assert_array_equal(one_byte, raw)
    image, bayer = into_slot(raw.tobytes(), pattern.value, 8, 6, bgr)
    assert image is bgr and bayer is None
    np.testing.assert_array_equal(bgr, to_pipeline_image(raw.tobytes(), pattern.value, 8, 6))


def test_mono8_and_rgb8_are_written_into_their_slots():
    raw = mosaic()
    gray = np.zeros((6, 8), np.uint8)
    assert into_slot(raw.tobytes(), "Mono8", 8, 6, gray) == (gray, None)
    np.testing.assert_array_equal(gray, raw)
    rgb = np.random.default_rng(4).integers(0, 256, (6, 8, 3), dtype=np.uint8)
    bgr = np.zeros((6, 8, 3), np.uint8)
    assert into_slot(rgb.tobytes(), "RGB8", 8, 6, bgr)[0] is bgr
    np.testing.assert_array_equal(bgr, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


@pytest.mark.parametrize("pixel_format, slot", [
    ("Mono8", (6, 9)), ("Mono8", (6, 8, 3)), ("BayerRG8", (7, 8)), ("RGB8", (6, 8)), ("BGR8", (6, 9, 3)),
])
def test_a_frame_that_does_not_fit_its_slot_is_left_to_the_caller(pixel_format, slot):
    data = np.zeros(6 * 8 * 3, np.uint8).tobytes()
    out = np.full(slot, 7, np.uint8)
    assert into_slot(data, pixel_format, 8, 6, out) is None
    assert (out == 7).all(), "nothing may be written into a slot the frame does not fit"


def test_a_short_buffer_names_the_format_and_the_sizes():
    with pytest.raises(PixelFormatError, match=r"BayerRG8 8x6 needs 48 bytes, the buffer has 40"):
        into_slot(bytes(40), "BayerRG8", 8, 6, np.zeros((6, 8), np.uint8))


@pytest.mark.timeout(120)
def test_a_bayer_camera_in_raw_one_byte_slots_is_judged_as_if_it_had_demosaiced_itself(free_tcp_endpoint):
    """The GPU path's layout on the CPU: raw mosaics in HxW slots, demosaiced by the
    preprocess transform because each frame carries its pattern, give the verdicts and
    detections of the same camera demosaicing each frame itself (no slots). A frame
    that lost its pattern would be letterboxed as gray: other detections. tests/gpu runs
    the same through the kernel."""
    frames = 16
    pipeline, verdicts = run_bayer_camera_pipeline(free_tcp_endpoint, frames, raw_slots_allocator=np.empty)
    _, reference = run_bayer_camera_pipeline(free_tcp_endpoint, frames, lend=False)
    assert_exactly_once(verdicts, frames)
    pool = pipeline.frame_pools["cam0"]
    assert pool.shape == (480, 640) and pool.available == pool.count
    assert pipeline.captures[0].frames_unslotted < frames
    judged, expected = inspected(verdicts), inspected(reference)
    both = judged.keys() & expected.keys()  # a frame shed by a full queue in either run is not compared
    assert len(both) >= frames // 2
    assert {k: judged[k] for k in both} == {k: expected[k] for k in both}


def inspected(verdicts: list[dict]) -> dict[int, tuple]:
    return {v["frame_id"]: (v["verdict"], v["detections"]) for v in verdicts if v["verdict"] in ("PASS", "FAIL")}
