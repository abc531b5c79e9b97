"""Failed-part archive: real files on disk, the quota, the bounded queue, and the verdict
naming the file in a real pipeline run."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import numpy as np
import pytest

from pipeline.core.messages import Detections, Frame, Job, Outcome, PublishedVerdict, Reason, ReasonCode, Verdict
from pipeline.parts.archive import FailedPartArchive
from tests.fakes import FaultyBackend
from tests.pipeline_helpers import DEMO_MODEL, VerdictCollector, make_config, run_to_end

pytestmark = pytest.mark.timeout(90)

PROVENANCE = {"model_path": "m.onnx", "model_sha256": "ab" * 32, "config_sha256": "cd" * 32}


def failed_job(frame_id: int, outcome: Outcome = Outcome.FAIL, image: bool = True) -> Job:
    rng = np.random.default_rng(frame_id)
    pixels = rng.integers(0, 255, (120, 160, 3), np.uint8) if image else None  # noise: ~57 kB as PNG
    frame = Frame("cam0", frame_id, pixels, time.monotonic_ns(), time.time_ns(), part_id=f"P{frame_id}")
    det = Detections(np.array([[10, 10, 50, 40]], np.float32), np.array([0.9], np.float32), np.array([1]))
    reason = Reason(ReasonCode.DEFECT, "scratch > 0", class_name="scratch", score=0.9, box=(10, 10, 50, 40))
    return Job(frame, detections=det, verdict=Verdict(outcome, (reason,)))


def keep(archive: FailedPartArchive, job: Job) -> Job:
    """`job` through the archive as the publish stage takes it: claimed before the send,
    received as a published verdict after it."""
    named = archive.claim(job)
    archive.verdict_published(PublishedVerdict(named, job.frame.frame_id, time.monotonic_ns()))
    return named


def archive_at(root: Path, quota_bytes: int = 10**9, max_queue: int = 64) -> FailedPartArchive:
    return FailedPartArchive(root, quota_bytes, max_queue, {"FAIL", "ERROR"}, ("spot", "scratch"), PROVENANCE)


def test_a_claim_names_the_file_and_the_writer_saves_image_and_provenance(tmp_path):
    archive = archive_at(tmp_path)
    archive.start()
    named = keep(archive, failed_job(7))
    passed = keep(archive, failed_job(8, Outcome.PASS))
    archive.close()
    assert "archive_path" not in passed.extra  # PASS is not archived by default
    path = Path(named.extra["archive_path"])
    assert path.suffix == ".png" and path.is_file() and path.parent.parent.parent == tmp_path
    record = json.loads(path.with_name(path.name.replace(".png", ".json")).read_text())
    assert record["frame_id"] == 7 and record["part_id"] == "P7" and record["verdict"] == "FAIL"
    assert record["detections"] == [{"class": "scratch", "score": 0.9, "box": [10.0, 10.0, 50.0, 40.0]}]
    assert record["reasons"][0]["code"] == "defect" and record["model_sha256"] == PROVENANCE["model_sha256"]
    assert archive.stats()["saved"] == 1


def test_quota_removes_whole_frames_oldest_first_and_survives_a_restart(tmp_path):
    archive = archive_at(tmp_path, quota_bytes=200_000)
    archive.start()
    names = [keep(archive, failed_job(i)).extra["archive_path"] for i in range(8)]
    archive.close()
    kept = [n for n in names if os.path.exists(n)]
    assert kept == names[-len(kept):] and 1 <= len(kept) < len(names)  # the newest survive
    on_disk = sum(p.stat().st_size for p in tmp_path.rglob("*") if p.is_file())
    assert on_disk <= 200_000 and archive.stats()["evicted"] == len(names) - len(kept)
    leftovers = {p.name.split(".")[0] for p in tmp_path.rglob("*") if p.is_file()}
    assert leftovers == {Path(n).name.split(".")[0] for n in kept}  # no orphan json or image
    # a restarted archive counts what is there, and a smaller quota applies at once
    again = archive_at(tmp_path, quota_bytes=70_000)
    again.start()
    again.close()
    assert again.stats()["bytes"] <= 70_000 and os.path.exists(kept[-1]) and not os.path.exists(kept[0])


def test_a_full_queue_skips_frames_without_waiting(tmp_path):
    archive = archive_at(tmp_path, max_queue=2)  # writer not started yet: nothing drains
    results = [keep(archive, failed_job(i)) for i in range(5)]
    assert [("archive_path" in r.extra) for r in results] == [True, True, False, False, False]
    assert archive.stats()["skipped"] == 3
    archive.start()
    archive.close()
    assert archive.stats()["saved"] == 2 and all(os.path.exists(r.extra["archive_path"]) for r in results[:2])


def test_a_lost_frame_is_archived_as_provenance_only(tmp_path):
    archive = archive_at(tmp_path)
    archive.start()
    named = keep(archive, failed_job(3, Outcome.ERROR, image=False))
    archive.close()
    assert named.extra["archive_path"].endswith(".json") and os.path.exists(named.extra["archive_path"])


def test_pipeline_verdicts_name_their_archived_files(tmp_path, free_tcp_endpoint):
    from pipeline.composition.assembly import open_backend
    from pipeline.composition.driver import Substitutions

    frames = 20
    config = make_config(free_tcp_endpoint, archive={"enabled": True, "path": str(tmp_path / "archive")})
    collector = VerdictCollector(free_tcp_endpoint)
    try:
        broken = FaultyBackend(open_backend(config.model), raise_on={3, 4})  # two ERROR verdicts for sure
        assert run_to_end(config, frames, Substitutions(backend=broken)).stop() == 0
        assert collector.wait_for({"cam0": frames}, 10)
    finally:
        collector.close()
    verdicts = collector.verdicts["cam0"]
    for v in verdicts:
        assert ("archive" in v) == (v["verdict"] in ("FAIL", "ERROR")), v
    errors = [v for v in verdicts if v["verdict"] == "ERROR"]
    assert len(errors) >= 2
    for v in errors:
        record = json.loads(Path(v["archive"][: -len(".png")] + ".json").read_text())
        assert record["frame_id"] == v["frame_id"] and record["verdict"] == "ERROR"
        assert record["model_sha256"] == hashlib.sha256(DEMO_MODEL.read_bytes()).hexdigest()
    fails = [v for v in verdicts if v["verdict"] == "FAIL"]
    for v in fails + errors:  # a person looks at the annotated copy, not the raw frame
        assert Path(v["archive"][: -len(".png")] + ".annotated.jpg").stat().st_size > 0
