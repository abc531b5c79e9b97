"""Time is the contract between a part and its verdict: `late` is decided at the send,
and the first heartbeat precedes the first verdict. The real pipeline (synthetic camera,
demo model, ZeroMQ) with an independent subscriber."""

from __future__ import annotations

import pytest

from pipeline.composition.assembly import open_archive, open_backend
from pipeline.composition.driver import Substitutions
from tests.fakes import StallingArchive
from tests.pipeline_helpers import VerdictCollector, make_config, run_to_end

pytestmark = pytest.mark.timeout(90)
BUDGET_MS = 300.0


def test_a_verdict_sent_after_its_budget_always_says_late(free_tcp_endpoint, tmp_path):
    frames = 9
    collector = VerdictCollector(free_tcp_endpoint)
    try:
        config = make_config(free_tcp_endpoint, budget_ms=BUDGET_MS, fps=10,
                             archive={"enabled": True, "path": str(tmp_path / "archive")})
        backend = open_backend(config.model)  # the archive names the model's classes
        archive = open_archive(config, backend.class_names)
        assert archive is not None
        stalling = StallingArchive(archive, stall_s=BUDGET_MS * 1.3 / 1000)  # every third frame
        assert run_to_end(config, frames, Substitutions(backend=backend, archive=stalling)).stop() == 0
        assert collector.wait_for({"cam0": frames}, timeout_s=30)
    finally:
        collector.close()
    verdicts = collector.verdicts["cam0"]
    past_budget = [v for v in verdicts if v["latency_ms"]["total"] > BUDGET_MS]
    assert len(past_budget) >= 3, [v["latency_ms"]["total"] for v in verdicts]
    assert all(v["late"] for v in past_budget), [(v["frame_id"], v["latency_ms"]["total"], v["late"]) for v in verdicts]
    assert all(v["verdict"] != "PASS" for v in past_budget), "fail_safe: a late part never passes"
    assert all(not v["late"] for v in verdicts if v["latency_ms"]["total"] <= BUDGET_MS)
    assert collector.topics[0].endswith(b"._heartbeat"), "the first message is a heartbeat, before any verdict"
