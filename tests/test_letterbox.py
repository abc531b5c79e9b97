"""Letterbox geometry, pixel values and the exact round trip of boxes through Geometry."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from pipeline.core.messages import BayerPattern
from pipeline.parts.preprocessing import BadFrame, Letterboxer

PAD = np.float32(114) * np.float32(1 / 255)


def _out(w: int, h: int, dtype=np.float32) -> np.ndarray:
    return np.full((3, h, w), -1, dtype)


@pytest.mark.parametrize(
    ("src", "size", "scale", "resized", "pad"),
    [
        ((640, 480), (320, 320), 0.5, (320, 240), (0, 40)),
        ((480, 640), (320, 320), 0.5, (240, 320), (40, 0)),
        ((1920, 1080), (640, 640), 1 / 3, (640, 360), (0, 140)),
        ((640, 640), (640, 640), 1.0, (640, 640), (0, 0)),
        ((100, 50), (64, 64), 0.64, (64, 32), (0, 16)),
        ((101, 37), (64, 32), 64 / 101, (64, 23), (0, 4)),
    ],
)
def test_geometry_matches_hand_computed_cases(src, size, scale, resized, pad):
    geometry = Letterboxer(size).geometry(*src)
    assert geometry.scale == pytest.approx(scale)
    assert (geometry.pad_x, geometry.pad_y) == pad
    assert (geometry.src_width, geometry.src_height) == src
    nw, nh = round(src[0] * geometry.scale), round(src[1] * geometry.scale)
    assert (nw, nh) == resized


def test_odd_padding_puts_the_extra_pixel_after_the_image():
    geometry = Letterboxer((64, 64)).geometry(64, 33)
    assert geometry.pad_y == (64 - 33) // 2 == 15


def test_solid_colour_becomes_exact_rgb_inside_and_pad_outside():
    image = np.empty((480, 640, 3), np.uint8)
    image[:] = (10, 128, 250)  # BGR
    out = _out(320, 320)
    geometry = Letterboxer((320, 320))(image, out)
    assert geometry.pad_y == 40
    inside = out[:, 40:280, :]
    for channel, value in enumerate((250, 128, 10)):  # RGB order in the output
        np.testing.assert_allclose(inside[channel], value / 255, atol=1e-7)
    np.testing.assert_allclose(out[:, :40, :], PAD, atol=1e-7)
    np.testing.assert_allclose(out[:, 280:, :], PAD, atol=1e-7)


def test_gray_frame_is_replicated_to_three_channels():
    image = np.full((100, 200), 77, np.uint8)
    out = _out(64, 64)
    geometry = Letterboxer((64, 64))(image, out)
    assert (geometry.pad_x, geometry.pad_y) == (0, 16)
    np.testing.assert_allclose(out[:, 16:48, :], 77 / 255, atol=1e-7)
    np.testing.assert_allclose(out[:, :16, :], PAD, atol=1e-7)


def test_custom_pad_value_and_float16_output():
    out = _out(64, 64, np.float16)
    Letterboxer((64, 64), pad_value=0)(np.full((32, 64, 3), 255, np.uint8), out)
    assert out.dtype == np.float16
    assert np.all(out[:, :16, :] == 0) and np.all(out[:, 16:48, :] == 1)


def test_output_matches_opencv_resize_reference():
    import cv2

    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (90, 160, 3), np.uint8)
    out = _out(64, 64)
    Letterboxer((64, 64))(image, out)
    reference = cv2.resize(image, (64, 36), interpolation=cv2.INTER_LINEAR)[:, :, ::-1]
    np.testing.assert_allclose(out[:, 14:50, :], reference.transpose(2, 0, 1) / 255, atol=1e-6)


def test_scratch_buffers_are_reused_per_source_size():
    letterboxer, out = Letterboxer((64, 64)), _out(64, 64)
    image = np.zeros((48, 64, 3), np.uint8)
    letterboxer(image, out)
    (scratch,) = letterboxer._scratch.values()
    canvas_address = scratch.canvas.ctypes.data
    letterboxer(image, out)
    letterboxer(np.zeros((48, 64), np.uint8), out)  # a new kind of frame gets its own set
    assert len(letterboxer._scratch) == 2
    assert letterboxer._scratch[(64, 48, 3)].canvas.ctypes.data == canvas_address


def test_boxes_round_trip_from_source_to_input_and_back_exactly():
    geometry = Letterboxer((320, 320)).geometry(640, 480)
    source = np.array([[0, 0, 640, 480], [100.5, 20, 300, 460.25]], np.float32)
    model_input = source.copy()
    model_input[:, [0, 2]] = source[:, [0, 2]] * geometry.scale + geometry.pad_x
    model_input[:, [1, 3]] = source[:, [1, 3]] * geometry.scale + geometry.pad_y
    np.testing.assert_array_equal(geometry.to_source(model_input), source)


@pytest.mark.parametrize(
    ("image", "fragment"),
    [
        (np.zeros((10, 10, 3), np.float32), "float32"),
        (np.zeros((10, 10, 4), np.uint8), "(10, 10, 4)"),
        (np.zeros((10,), np.uint8), "(10,)"),
        (np.zeros((0, 10, 3), np.uint8), "(0, 10, 3)"),
        ([[1, 2]], "list"),
    ],
)
def test_bad_frames_raise_bad_frame_naming_shape_and_dtype(image, fragment):
    with pytest.raises(BadFrame, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        Letterboxer((64, 64))(image, _out(64, 64))


def test_wrong_output_buffer_is_a_value_error():
    with pytest.raises(ValueError, match=r"\(3, 64, 64\)"):
        Letterboxer((64, 64))(np.zeros((8, 8, 3), np.uint8), np.zeros((3, 32, 64), np.float32))


# GenICam names -> OpenCV's codes, written out here on purpose: the test does not reuse
# the table under test
BAYER_CODES = {"BayerRG8": cv2.COLOR_BayerRGGB2BGR, "BayerBG8": cv2.COLOR_BayerBGGR2BGR,
               "BayerGR8": cv2.COLOR_BayerGRBG2BGR, "BayerGB8": cv2.COLOR_BayerGBRG2BGR}


@pytest.mark.parametrize("name", sorted(BAYER_CODES))
def test_a_bayer_mosaic_is_demosaiced_by_opencv_then_letterboxed(name):
    mosaic = np.random.default_rng(5).integers(0, 256, (60, 100), dtype=np.uint8)
    expected, got = _out(64, 64), _out(64, 64)
    Letterboxer((64, 64))(cv2.cvtColor(mosaic, BAYER_CODES[name]), expected)
    letterboxer = Letterboxer((64, 64))
    geometry = letterboxer(mosaic, got, BayerPattern(name))
    np.testing.assert_array_equal(got, expected)
    assert (geometry.src_width, geometry.src_height) == (100, 60)
    # the same array without its pattern is a Mono8 frame: another image
    as_gray = _out(64, 64)
    letterboxer(mosaic, as_gray)
    assert not np.array_equal(as_gray, expected)


def test_a_bayer_frame_must_be_a_single_plane_of_at_least_3x3():
    with pytest.raises(BadFrame, match="BayerRG8"):
        Letterboxer((64, 64))(np.zeros((8, 8, 3), np.uint8), _out(64, 64), BayerPattern.RG)
    with pytest.raises(BadFrame, match="3x3"):
        Letterboxer((64, 64))(np.zeros((2, 8), np.uint8), _out(64, 64), BayerPattern.RG)
