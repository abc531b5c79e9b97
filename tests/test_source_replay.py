"""ReplaySource: folder order, looping, end of stream, bad files, video, grayscale, pacing."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from pipeline.config.cameras import CameraConfig
from pipeline.core.buffers import FramePool
from pipeline.core.messages import Job
from pipeline.core.queues import StageQueue
from pipeline.core.telemetry import Telemetry
from pipeline.parts.sources.frame_source import FrameSource, SourceEnded, SourceError
from pipeline.parts.sources.replay import ReplaySource
from pipeline.stages.capture import CaptureStage

pytestmark = pytest.mark.timeout(20)


def _write_images(folder: Path, names: list[str], gray: bool = False) -> None:
    folder.mkdir(exist_ok=True)
    for i, name in enumerate(names):
        shape = (24, 32) if gray else (24, 32, 3)
        cv2.imwrite(str(folder / name), np.full(shape, 10 * (i + 1), np.uint8))


def _values(source: ReplaySource, n: int) -> list[int]:
    return [int(source.read(timeout_s=1.0).image[0, 0, ...].flat[0]) for _ in range(n)]


def _open(path: Path, **kw) -> ReplaySource:
    source = ReplaySource(path, **{"realtime": False, **kw})
    source.open()
    return source


def test_folder_plays_images_in_name_order_and_ignores_other_files(tmp_path):
    # written in the order 10, 20, 30 under names that sort differently
    _write_images(tmp_path, ["b.png", "a.bmp", "c.PNG"])
    (tmp_path / "notes.txt").write_text("not an image")
    source = _open(tmp_path)
    assert isinstance(source, FrameSource)
    assert _values(source, 3) == [20, 10, 30]


def test_end_of_folder_raises_source_ended_and_keeps_doing_so(tmp_path):
    _write_images(tmp_path, ["0.png", "1.png"])
    source = _open(tmp_path)
    _values(source, 2)
    for _ in range(2):
        with pytest.raises(SourceEnded):
            source.read(timeout_s=0.1)


def test_loop_starts_over(tmp_path):
    _write_images(tmp_path, ["0.png", "1.png"])
    assert _values(_open(tmp_path, loop=True), 5) == [10, 20, 10, 20, 10]


def test_grayscale_images_stay_single_channel_and_colour_is_bgr(tmp_path):
    _write_images(tmp_path, ["g.png"], gray=True)
    _write_images(tmp_path / "colour", ["c.jpg"])
    assert _open(tmp_path).read(1.0).image.shape == (24, 32)
    colour = _open(tmp_path / "colour").read(1.0).image
    assert colour.shape == (24, 32, 3) and colour.dtype == np.uint8


def test_a_corrupt_file_is_an_error_naming_it_then_reading_continues(tmp_path):
    _write_images(tmp_path, ["0.png", "2.png"])
    (tmp_path / "1.png").write_bytes(b"not a png")
    source = _open(tmp_path)
    assert _values(source, 1) == [10]
    with pytest.raises(SourceError, match="1.png") as err:
        source.read(timeout_s=1.0)
    assert getattr(err.value, "frame_lost", False)
    assert _values(source, 1) == [20]


def test_missing_path_and_empty_folder_are_errors_naming_the_path(tmp_path):
    with pytest.raises(SourceError, match="nowhere"):
        ReplaySource(tmp_path / "nowhere").open()
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError, match="empty"):
        ReplaySource(tmp_path / "empty").open()
    bad_video = tmp_path / "broken.avi"
    bad_video.write_bytes(b"nothing here")
    with pytest.raises(SourceError, match="broken.avi"):
        ReplaySource(bad_video).open()


def _write_video(path: Path, n: int) -> None:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (64, 48))
    assert writer.isOpened()
    for i in range(n):
        writer.write(np.full((48, 64, 3), 40 * (i + 1), np.uint8))
    writer.release()


def test_video_file_plays_its_frames_then_ends(tmp_path):
    _write_video(tmp_path / "clip.avi", 3)
    source = _open(tmp_path / "clip.avi")
    frames = [source.read(timeout_s=1.0).image for _ in range(3)]
    assert all(f.shape == (48, 64, 3) for f in frames)
    assert [round(int(f.mean()), -1) for f in frames] == [40, 80, 120]
    with pytest.raises(SourceEnded):
        source.read(timeout_s=0.1)
    source.close()


def test_video_file_loops(tmp_path):
    _write_video(tmp_path / "clip.avi", 2)
    source = _open(tmp_path / "clip.avi", loop=True)
    means = [round(int(source.read(1.0).image.mean()), -1) for _ in range(5)]
    assert means == [40, 80, 40, 80, 40]


def test_realtime_paces_reads_at_the_camera_fps(tmp_path):
    _write_images(tmp_path, ["0.png"])
    source = _open(tmp_path, fps=100.0, loop=True, realtime=True)
    start = time.monotonic()
    assert all(source.read(timeout_s=1.0) is not None for _ in range(10))
    assert time.monotonic() - start >= 0.08  # a lower bound: a loaded machine only lengthens it; pacing in time is what is tested


def test_from_config_uses_the_camera_fps_and_source_options(tmp_path):
    _write_images(tmp_path, ["0.png"])
    camera = CameraConfig(id="cam1", fps=100, source={"kind": "replay", "path": str(tmp_path), "loop": True})
    source = ReplaySource.from_config(camera)
    source.open()
    assert source.loop and _values(source, 3) == [10, 10, 10]


def test_a_folder_image_is_copied_once_into_the_slot_and_a_video_decoded_into_it(tmp_path):
    _write_images(tmp_path / "images", ["a.png", "b.png"])
    _write_video(tmp_path / "clip.avi", 2)
    for path, shape in ((tmp_path / "images", (24, 32, 3)), (tmp_path / "clip.avi", (48, 64, 3))):
        into, plain = _open(path), _open(path)
        slots = [np.zeros(shape, np.uint8) for _ in range(2)]
        for slot in slots:
            got = into.read_into(slot, 1.0)
            assert got.image is slot
            np.testing.assert_array_equal(slot, plain.read(1.0).image)
        assert into.copies_into_slot is (path.name == "images")


def test_an_image_that_does_not_fit_the_slot_keeps_its_own_array_said_once(tmp_path, caplog):
    _write_images(tmp_path, ["a.png", "b.png", "c.png"], gray=True)
    source, slot = _open(tmp_path), np.zeros((24, 32, 3), np.uint8)
    with caplog.at_level("WARNING", logger="pipeline.parts.sources.replay"):
        frames = [source.read_into(slot, 1.0) for _ in range(3)]
    assert [f.image.shape for f in frames] == [(24, 32)] * 3 and not slot.any()
    assert sum("does not fit the camera's frame slots (24x32x3)" in r.getMessage() for r in caplog.records) == 1


def test_the_capture_stage_lends_a_folder_replay_slots_only_when_they_are_page_locked(tmp_path):
    """Copying a decoded image into an ordinary slot would only add a copy on the CPU path."""
    _write_images(tmp_path / "images", ["a.png", "b.png"])
    _write_video(tmp_path / "clip.avi", 2)

    def capture(path: Path, pinned: bool) -> CaptureStage:
        pool = FramePool((24, 32, 3), 4, pinned=pinned)
        return CaptureStage("cam", _open(path), StageQueue("preprocess", 8), Telemetry(["cam"]), threading.Event(),
                            max_frames=2, frame_pool=pool)

    assert capture(tmp_path / "images", pinned=False).frame_pool is None
    assert capture(tmp_path / "clip.avi", pinned=False).frame_pool is not None
    stage = capture(tmp_path / "images", pinned=True)
    stage.start()
    stage.thread.join(10)
    jobs = [item for item in stage.outbox.drain() if isinstance(item, Job)]
    assert len(jobs) == 2 and all(j.frame_slot is not None and j.frame.image is j.frame_slot.array for j in jobs)
