"""`cameras:`: one entry per camera: its id, its source, its frame size and rate, and its
part-id trigger.

Owns the camera config and the camera-id pattern (the protocol checks ids with the same one).
"""

from __future__ import annotations

from pydantic import Field

from pipeline.config.sources import SourceConfig
from pipeline.config.strict import Strict

CAMERA_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"  # the protocol checks the same


class CameraConfig(Strict):
    """One camera: its frames come from `source`; ids are unique across the file (`models`)."""

    id: str = Field(pattern=CAMERA_ID_PATTERN)
    source: SourceConfig
    width: int = Field(640, ge=16, le=16384)
    height: int = Field(480, ge=16, le=16384)
    fps: float = Field(30.0, gt=0, le=1000)
    mm_per_px: float | None = Field(None, gt=0)
    stall_timeout_s: float = Field(2.0, gt=0)  # STALLED when connected but silent this long
    # ZeroMQ PULL endpoint the PLC gateway PUSHes part ids to (docs/PROTOCOL.md, "Part ids").
    trigger_endpoint: str | None = Field(None, pattern=r"^(tcp|ipc|inproc)://.+")
    # An announced part with no image after this long gets a NOT_INSPECTED verdict.
    trigger_timeout_s: float = Field(0.5, gt=0, le=60)
