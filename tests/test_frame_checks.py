"""Frames checked before they are judged: real JPEG/PNG files rendered by the project's
own synthetic camera, cut short or declaring a huge size, replayed from a real folder."""

from __future__ import annotations

import struct

import cv2
import pytest

from pipeline.parts.sources.frame_check import declared_size, frame_problem
from pipeline.parts.sources.frame_source import SourceError
from pipeline.parts.sources.replay import ReplaySource
from pipeline.parts.sources.synthetic import SyntheticSource

pytestmark = pytest.mark.timeout(60)


def encoded(ext: str, k: int = 0) -> bytes:
    image = SyntheticSource(width=320, height=240, seed=3).render(k).image
    ok, buf = cv2.imencode(ext, image)
    assert ok
    return buf.tobytes()


def declaring(jpeg: bytes, width: int, height: int) -> bytes:
    """The same JPEG with its SOF segment rewritten to declare width x height."""
    i = 2
    while jpeg[i + 1] not in (0xC0, 0xC1, 0xC2):
        i += 2 + struct.unpack(">H", jpeg[i + 2:i + 4])[0]
    return jpeg[:i + 5] + struct.pack(">HH", height, width) + jpeg[i + 9:]


def test_complete_images_pass_and_state_their_size():
    for ext in (".jpg", ".png"):
        data = encoded(ext)
        assert declared_size(data) == (320, 240)
        assert frame_problem(data, (320, 240)) is None


def test_truncated_jpeg_and_png_are_refused():
    jpeg, png = encoded(".jpg"), encoded(".png")
    assert frame_problem(jpeg[: len(jpeg) * 4 // 10]) == "truncated JPEG: no end-of-image marker"
    assert frame_problem(png[: len(png) // 2]) == "truncated PNG: no IEND chunk"


def test_replay_gives_a_lost_frame_for_each_bad_file_and_decodes_the_good_ones(tmp_path):
    jpeg = encoded(".jpg")
    files = {"0_good.jpg": jpeg, "1_cut.jpg": jpeg[: len(jpeg) * 4 // 10], "2_cut.png": encoded(".png")[:4000],
             "3_huge.jpg": declaring(jpeg, 20000, 20000), "4_good.png": encoded(".png", 1)}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    source = ReplaySource(tmp_path, realtime=False, max_size=(640, 480))
    source.open()
    outcomes = []
    for _ in files:
        # A refusal that stalled capture would end this read by its timeout, a SourceError
        # that is no lost frame: the assertion below fails on it, with no clock read.
        try:
            outcomes.append(source.read(1.0).image.shape)
        except SourceError as exc:
            assert getattr(exc, "frame_lost", False), "a bad file must cost one frame, not the stream"
            outcomes.append(str(exc).split(": ", 1)[1])
    source.close()
    assert outcomes == [(240, 320, 3), "truncated JPEG: no end-of-image marker", "truncated PNG: no IEND chunk",
                        "JPEG of 20000x20000 is larger than the camera's configured 640x480; not decoded",
                        (240, 320, 3)]


def test_pipeline_run_on_a_replay_folder_gives_one_verdict_per_file_errors_for_bad_ones_and_exits_0(
        tmp_path, free_tcp_endpoint):
    """`pipeline run` as a user runs it: the truncated JPEG is ERROR bad_frame, the end of
    the folder invents no verdict, the camera ends ENDED and the process exits 0."""
    import subprocess
    import sys

    import yaml

    from tests.pipeline_helpers import ROOT, VerdictCollector, config_dict

    images = tmp_path / "images"
    images.mkdir()
    jpeg = encoded(".jpg")
    for k in range(4):
        (images / f"{k}_good.jpg").write_bytes(encoded(".jpg", k))
    (images / "4_cut.jpg").write_bytes(jpeg[: len(jpeg) * 4 // 10])
    cameras = [{"id": "cam0", "source": {"kind": "replay", "path": str(images)}, "fps": 10, "width": 320, "height": 240}]
    data = config_dict(free_tcp_endpoint)
    data["cameras"] = cameras
    config = tmp_path / "line.yaml"
    config.write_text(yaml.safe_dump(data))
    collector = VerdictCollector(free_tcp_endpoint)
    try:
        proc = subprocess.run([sys.executable, "-m", "pipeline.service.cli", "run", str(config)], cwd=ROOT,
                              capture_output=True, text=True, timeout=90)
        assert collector.wait_for_last_heartbeat(10)
    finally:
        collector.close()
    verdicts = collector.verdicts["cam0"]
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert sorted(v["frame_id"] for v in verdicts) == [0, 1, 2, 3, 4], "one verdict per file, none invented"
    cut = [v for v in verdicts if v["frame_id"] == 4][0]
    assert cut["verdict"] == "ERROR" and cut["reasons"][0]["code"] == "bad_frame"
    assert "truncated JPEG" in cut["reasons"][0]["detail"]
    assert all(v["verdict"] in ("PASS", "FAIL") for v in verdicts if v["frame_id"] != 4)
    assert collector.heartbeats[-1]["cameras"]["cam0"]["state"] == "ENDED"
