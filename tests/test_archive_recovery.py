"""A full archive disk is no longer permanent: on a real tmpfs filled to the brim, the
archive disables itself (health DEGRADED, reason `archive disabled`), and once the space
is freed it re-enables itself: verdicts name archived files again, health recovers."""

from __future__ import annotations

import os

import pytest

from pipeline.composition.app import Pipeline
from pipeline.composition.assembly import build_parts
from tests.pipeline_helpers import VerdictCollector, make_config
from tests.tmpfs import mounted_tmpfs

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def small_disk(tmp_path):
    with mounted_tmpfs(tmp_path / "disk", "4m") as mount:
        yield mount


def test_the_archive_comes_back_when_space_returns(small_disk, free_tcp_endpoint):
    archive_dir, filler = small_disk / "archive", small_disk / "filler"
    archive_dir.mkdir()
    free = os.statvfs(small_disk).f_bavail * os.statvfs(small_disk).f_frsize
    filler.write_bytes(b"\0" * (free - 16 * 1024))  # leaves 16 kB: no frame fits
    config = make_config(free_tcp_endpoint, fps=10, archive={"enabled": True, "path": str(archive_dir),
                                                              "save": ["PASS", "FAIL", "ERROR", "NOT_INSPECTED"]})
    collector = VerdictCollector(free_tcp_endpoint)
    pipeline = Pipeline(config, build_parts(config), max_frames=2000)
    try:
        pipeline.start()
        full = collector.wait_for_heartbeat(30, lambda hb: any(r.startswith("archive disabled") for r in hb["health_reasons"]))
        assert full is not None and full["health"] == "DEGRADED"
        filler.unlink()
        seen = len(collector.verdicts["cam0"])
        back = collector.wait_for_heartbeat(
            30, lambda hb: not any(r.startswith("archive disabled") for r in hb["health_reasons"]))
        assert back is not None, "the archive stayed disabled after the space returned"
        seen = len(collector.verdicts["cam0"])  # verdicts in flight at the recovery may predate it
        assert collector.wait_for({"cam0": seen + 20}, 30)
    finally:
        pipeline.stop_event.set()
        pipeline.shutdown(timeout_s=10)
        collector.close()
    later = collector.verdicts["cam0"][seen + 5:]
    assert later and all("archive" in v for v in later), "verdicts after the recovery name no archived file"
    assert not pipeline.parts.archive.disabled
