"""The frame path is warmed before the cameras start: every camera's resolution goes
through the real letterbox, model, decoder and rules (never the sources: warming reads no frame)."""

from __future__ import annotations

import pytest

from pipeline.composition.assembly import build_parts
from pipeline.composition.warmup import warm_path
from tests.fakes import FaultyBackend
from tests.pipeline_helpers import make_config

pytestmark = pytest.mark.timeout(90)


def test_each_camera_resolution_runs_the_whole_path_and_nothing_is_counted(free_tcp_endpoint):
    config = make_config(free_tcp_endpoint, cameras=2)
    parts = build_parts(config)  # which warmed the path already, before any camera started
    counted = FaultyBackend(parts.backend)  # the real model, its calls counted
    parts.backend = counted
    try:
        assert warm_path(parts, config, runs=2)
        assert counted.calls == 2 * len(config.cameras)
        assert parts.publisher.dropped == 0
    finally:
        for close in (parts.publisher.close, counted.close, *parts.extra_closers):
            close()
        parts.context.term()
