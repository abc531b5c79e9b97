"""Log lines as an operator's log shipper sees them: JSON or plain, frame context on
per-frame records, and nothing per frame at INFO while the line runs."""

from __future__ import annotations

import io
import json
import logging

import pytest

from pipeline.composition.assembly import open_backend
from pipeline.composition.driver import Substitutions
from pipeline.config.models import LoggingConfig
from pipeline.core.logging_setup import configure_logging
from tests.fakes import FaultyBackend
from tests.pipeline_helpers import VerdictCollector, make_config, run_to_end

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
def root_logging():
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in saved[0]:
        root.addHandler(handler)
    root.setLevel(saved[1])


def test_plain_lines_carry_the_frame_context(root_logging):
    out = io.StringIO()
    configure_logging(LoggingConfig(), stream=out)
    logging.getLogger("pipeline.test").warning("bad frame", extra={"camera_id": "cam3", "frame_id": 41})
    logging.getLogger("pipeline.test").debug("not shown at INFO")
    assert out.getvalue().rstrip().endswith("WARNING pipeline.test: bad frame [camera=cam3 frame_id=41]")
    configure_logging(LoggingConfig(level="WARNING"), level="DEBUG", stream=out)  # the flag wins
    assert logging.getLogger().level == logging.DEBUG


def test_json_lines_from_a_running_pipeline(root_logging, free_tcp_endpoint):
    out = io.StringIO()
    configure_logging(LoggingConfig(format="json"), stream=out)
    frames = 30
    config = make_config(free_tcp_endpoint)
    collector = VerdictCollector(free_tcp_endpoint)
    try:
        broken = FaultyBackend(open_backend(config.model), raise_on={5, 6})  # per-frame warnings
        assert run_to_end(config, frames, Substitutions(backend=broken)).stop() == 0
    finally:
        collector.close()
    records = [json.loads(line) for line in out.getvalue().splitlines()]  # every line is JSON
    per_frame = [r for r in records if "frame_id" in r]
    assert per_frame and all(r["camera_id"] == "cam0" and isinstance(r["frame_id"], int) for r in per_frame)
    assert all(r["level"] in ("WARNING", "ERROR") for r in per_frame)
    info = [r for r in records if r["level"] == "INFO"]
    assert len(info) < 10, info  # start-up lines only: nothing per frame at INFO
    assert all({"time", "level", "logger", "message"} <= r.keys() for r in records)
