"""SyntheticSource: deterministic rendering, truthful boxes, defect rates and pacing."""

from __future__ import annotations

import time

import numpy as np
import pytest

from pipeline.config.cameras import CameraConfig
from pipeline.parts.sources.frame_source import FrameSource
from pipeline.parts.sources.synthetic import SUPPORTED_CLASSES, SyntheticSource

pytestmark = pytest.mark.timeout(20)


def _source(**kw) -> SyntheticSource:
    args = dict(width=320, height=240, fps=30.0, seed=7, defect_probability=1.0, max_defects=3, realtime=False)
    return SyntheticSource(**{**args, **kw})


def test_is_a_frame_source_built_from_config():
    camera = CameraConfig(id="cam1", width=160, height=120, fps=50,
                          source={"kind": "synthetic", "seed": 3, "classes": ["spot"], "realtime": False})
    source = SyntheticSource.from_config(camera)
    assert isinstance(source, FrameSource)
    source.open()
    frame = source.read(timeout_s=0.1)
    source.close()
    assert frame.image.shape == (120, 160, 3) and frame.image.dtype == np.uint8
    assert frame.part_id is None and frame.truth.class_names == ("spot",)


def test_same_seed_and_index_give_identical_image_and_truth():
    a, b = _source().render(5), _source().render(5)
    assert np.array_equal(a.image, b.image)
    assert np.array_equal(a.truth.boxes, b.truth.boxes)
    assert np.array_equal(a.truth.class_ids, b.truth.class_ids)


def test_read_sequence_equals_random_access_render():
    source = _source()
    frames = [source.read(0.1) for _ in range(3)]
    assert np.array_equal(frames[2].image, _source().render(2).image)


def test_different_seeds_or_indices_differ():
    assert not np.array_equal(_source(seed=1).render(0).image, _source(seed=2).render(0).image)
    source = _source()
    assert not np.array_equal(source.render(0).image, source.render(1).image)


def test_truth_boxes_are_inside_the_frame_with_sensible_sizes():
    source = _source(width=640, height=480)
    for k in range(30):
        truth = source.render(k).truth
        assert truth.boxes.dtype == np.float32 and truth.class_ids.dtype == np.int64
        assert np.all(truth.boxes[:, :2] >= 0) and np.all(truth.boxes[:, 2] <= 640) and np.all(truth.boxes[:, 3] <= 480)
        longer = (truth.boxes[:, 2:] - truth.boxes[:, :2]).max(axis=1)
        assert np.all(longer >= 6) and np.all(longer <= 160)


def test_boxes_cover_visible_defects_drawn_on_the_part():
    # the same frame without defects is the same image but for the defects themselves
    defective, clean = _source(width=640, height=480), _source(width=640, height=480, defect_probability=0.0)
    for k in range(30):
        frame, twin = defective.render(k).image, clean.render(k).image
        diff = np.abs(frame.astype(int) - twin).max(axis=2)
        inside = np.zeros(diff.shape, bool)
        for x1, y1, x2, y2 in defective.render(k).truth.boxes.astype(int):
            inside[y1:y2, x1:x2] = True
            changed = diff[y1:y2, x1:x2] > 30
            assert changed.any()  # visible
            # drawn on metal (bright) not on the belt (median about 58)
            assert np.median(twin[y1:y2, x1:x2].mean(axis=2)[changed]) > 65
        assert diff[~inside].max() < 100  # only faint antialiased fringes fall outside a box


def test_probability_zero_never_and_one_always_has_defects():
    never, always = _source(defect_probability=0.0), _source(defect_probability=1.0)
    assert not any(never.render(k).truth.defective for k in range(50))
    assert all(always.render(k).truth.defective for k in range(50))


def test_max_defects_and_classes_are_respected():
    source = _source(classes=("crack", "spot"), max_defects=2)
    ids = np.concatenate([source.render(k).truth.class_ids for k in range(40)])
    counts = [len(source.render(k).truth.class_ids) for k in range(40)]
    assert set(ids.tolist()) == {0, 1} and max(counts) <= 2


def test_unknown_class_is_rejected_naming_it_and_the_supported_ones():
    with pytest.raises(ValueError) as err:
        _source(classes=("scratch", "dent"))
    assert "dent" in str(err.value) and all(name in str(err.value) for name in SUPPORTED_CLASSES)


def test_full_hd_and_tiny_frames_render():
    assert _source(width=1920, height=1080).render(0).image.shape == (1080, 1920, 3)
    assert _source(width=64, height=48).render(0).image.shape == (48, 64, 3)


def test_realtime_paces_reads_at_the_camera_fps():
    source = _source(fps=100.0, realtime=True)
    source.open()
    start = time.monotonic()
    frames = [source.read(timeout_s=1.0) for _ in range(10)]
    assert time.monotonic() - start >= 0.08  # a lower bound: a loaded machine only lengthens it; pacing in time is what is tested
    assert all(f is not None for f in frames)


def test_realtime_read_returns_none_when_no_frame_is_due_within_the_timeout():
    source = _source(fps=2.0, realtime=True)
    source.open()
    assert source.read(timeout_s=0.5) is not None
    start = time.monotonic()
    assert source.read(timeout_s=0.05) is None
    assert time.monotonic() - start >= 0.04  # a lower bound: a loaded machine only lengthens it; pacing in time is what is tested
