"""The frame path is warmed before the cameras start: every camera's resolution goes
through the real letterbox, model, decoder and rules (never the sources: warming reads no frame)."""

from __future__ import annotations

import pytest

from pipeline.composition.assembly import build_parts, open_backend
from pipeline.composition.warmup import WARM_RUNS, warm_path
from tests.fakes import FaultyBackend
from tests.pipeline_helpers import make_config

pytestmark = pytest.mark.timeout(90)


def test_each_camera_resolution_runs_the_whole_path_and_nothing_is_counted(free_tcp_endpoint):
    config = make_config(free_tcp_endpoint, cameras=2)
    counted = FaultyBackend(open_backend(config.model))  # the real model, its calls counted
    parts = build_parts(config, backend=counted)  # which warms the path, before any camera started
    try:
        assert counted.calls == WARM_RUNS * len(config.cameras)
        assert warm_path(parts, config, runs=2)
        assert counted.calls == (WARM_RUNS + 2) * len(config.cameras)
        assert parts.publisher.dropped == 0
    finally:
        for close in (parts.publisher.close, counted.close, *parts.extra_closers):
            close()
        parts.context.term()
