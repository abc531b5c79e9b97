"""Warming the whole per-frame path before the cameras start, so the first parts after
READY are not late because of first-call costs.

The backend warms itself (`model.warmup_runs`); what is still cold after that is
everything around it: the letterbox's first resize at each camera's resolution, the
decoder's first NMS, the rule book's first judgement (numpy's lazy initialisations,
allocator growth). `warm_path` runs that chain `runs` times per camera on a blank frame
of the camera's size and layout (its frame slot's shape: HxW for a Mono8 camera),
through the very parts the stages will use, and discards the result: nothing is
queued, counted or published.

Host transforms only: with the GPU letterbox (a slot pool of device buffers) the kernel
and its slots are owned by the preprocess stage's stream protocol, so that path is left
to the backend's own warm-up and `warm_path` says it did nothing.
"""

from __future__ import annotations

import logging
import time

import numpy as np

from pipeline.composition.app import Parts
from pipeline.config.models import PipelineConfig
from pipeline.parts.rules import RuleBook
from pipeline.parts.sources.pixel_formats import slot_shape

log = logging.getLogger(__name__)

WARM_RUNS = 3  # runs per camera at start-up (the first pays the lazy initialisations)


def warm_path(parts: Parts, config: PipelineConfig, runs: int = WARM_RUNS) -> bool:
    """True when the path was warmed (host transform), False when left to the backend."""
    if parts.slot_pool is not None:
        return False
    backend = parts.backend
    width, height = backend.input_size
    tensor = np.zeros((3, height, width), backend.input_dtype)
    rules = RuleBook(config.rules, backend.class_names)
    t0 = time.perf_counter()
    for camera in config.cameras:
        image = np.zeros(slot_shape(camera, raw_bayer=False), np.uint8)  # host path: Bayer arrives as BGR
        for _ in range(runs):
            geometry = parts.transform(image, tensor)
            raw = backend.infer_tensors([tensor])
            rules.judge(parts.decoder(raw[0][None], geometry), camera.mm_per_px)
    log.debug("warmed the frame path: %d run(s) per camera in %.0f ms", runs, (time.perf_counter() - t0) * 1e3)
    return True
