"""The one fan-out of published verdicts: every sink gets every verdict in order, and a
sink that raises is dropped without costing any part its verdict. The real pipeline
(synthetic camera, demo model) through the run driver, with a real SUB socket."""

from __future__ import annotations

import logging

import pytest

from pipeline.composition.driver import RunDriver, StopReason, Substitutions, Until
from pipeline.core.messages import PublishedVerdict
from tests.pipeline_helpers import VerdictCollector, assert_exactly_once, make_config

pytestmark = pytest.mark.timeout(90)

FRAMES = 12


class Seen:
    """Keeps (frame id, seq, latency) of every verdict; raises on the `fail_at`-th."""

    def __init__(self, fail_at: int | None = None):
        self.fail_at = fail_at
        self.got: list[tuple[int, int, float]] = []

    def verdict_published(self, published: PublishedVerdict) -> None:
        self.got.append((published.job.frame.frame_id, published.seq, published.latency_ms))
        if self.fail_at is not None and len(self.got) == self.fail_at:
            raise RuntimeError("injected: a broken observer")


def test_a_sink_that_raises_is_dropped_and_every_part_still_gets_its_verdict(free_tcp_endpoint, caplog):
    broken, after = Seen(fail_at=3), Seen()
    config = make_config(free_tcp_endpoint, fps=30)
    collector = VerdictCollector(free_tcp_endpoint)
    driver = RunDriver(config, frames=FRAMES, substitutions=Substitutions(sinks=(broken, after)))
    try:
        driver.open()
        driver.start()
        assert driver.run(Until(duration_s=60)) is StopReason.ENDED
        assert driver.stop(10) == 0
        assert collector.wait_for({"cam0": FRAMES}, 10)
    finally:
        collector.close()
    wire = collector.verdicts["cam0"]
    assert_exactly_once(wire, FRAMES)
    assert len(broken.got) == 3  # dropped after it raised
    assert [(f, s) for f, s, _ in after.got] == [(v["frame_id"], v["seq"]) for v in wire]  # all, in order
    assert [round(ms, 3) for _, _, ms in after.got] == [v["latency_ms"]["total"] for v in wire]
    assert any("failed and was removed" in r.getMessage() and r.levelno == logging.ERROR for r in caplog.records)
