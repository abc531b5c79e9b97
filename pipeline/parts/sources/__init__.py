"""Frame sources and their registry: config `kind` -> implementation, imported lazily so a
camera SDK is only needed when a camera of that kind is configured."""

from __future__ import annotations

import importlib

from pipeline.config.cameras import CameraConfig
from pipeline.parts.sources.frame_source import FrameSource, SourceError

SOURCES: dict[str, str] = {
    "synthetic": "pipeline.parts.sources.synthetic:SyntheticSource",
    "replay": "pipeline.parts.sources.replay:ReplaySource",
    "opencv": "pipeline.parts.sources.opencv_source:OpenCVSource",
    "genicam": "pipeline.parts.sources.genicam:GenICamSource",
}


def create_source(camera: CameraConfig) -> FrameSource:
    """Build (not yet open) the source of `camera`; SourceError names what is missing."""
    module_name, _, class_name = SOURCES[camera.source.kind].partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise SourceError(f"camera {camera.id}: source kind {camera.source.kind!r} is unavailable: {exc}") from None
    return getattr(module, class_name).from_config(camera)  # the registry names the class: a lookup, not a probe
