"""`cameras[].source`: where a camera's frames come from, one class per source kind.

Owns the source configs and the one list of source kinds (`SOURCE_KINDS`); the parts that
read them are in `pipeline.parts.sources`. How a source reconnects is `pipeline.config.reconnect`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, get_args

from pydantic import Field, model_validator

from pipeline.config.reconnect import ReconnectSettings
from pipeline.config.strict import Strict


class SyntheticSourceConfig(Strict):
    """A rendered belt of parts with random defects; needs no hardware."""

    kind: Literal["synthetic"]
    seed: int = 0
    defect_probability: float = Field(0.3, ge=0.0, le=1.0)
    max_defects: int = Field(2, ge=1, le=8)
    classes: tuple[str, ...] = ("scratch", "spot", "crack")
    realtime: bool = True  # pace frames at the camera's fps; False renders flat out


class ReplaySourceConfig(Strict):
    """A folder of images or a video file played back at the camera's fps."""

    kind: Literal["replay"]
    path: Path
    loop: bool = False
    realtime: bool = True


class OpenCVSourceConfig(ReconnectSettings):
    """A USB (V4L2), RTSP, HTTP-MJPEG or file stream read through OpenCV/FFmpeg (docs/CAMERAS.md)."""

    kind: Literal["opencv"]
    uri: str = Field(min_length=1)  # device index ("0"), /dev/videoN, rtsp://..., http://..., or a file path
    open_timeout_ms: int = Field(3000, ge=100)
    read_timeout_ms: int = Field(2000, ge=100)
    decode_threads: int = Field(1, ge=0)  # FFmpeg decoder threads; 1 is the low-latency choice, 0 = auto
    rtsp_transport: Literal["tcp", "udp"] = "tcp"


GENICAM_PIXEL_FORMATS = ("Mono8", "BayerRG8", "BayerBG8", "BayerGR8", "BayerGB8", "RGB8", "BGR8")


class GenICamSourceConfig(ReconnectSettings):
    """A GigE Vision / USB3 Vision camera through Aravis (docs/CAMERAS.md).

    Opened by `address` (unicast, no broadcast). `serial` / `user_id` alongside an address
    are checked after opening, so a swapped camera is refused; without an address they are
    looked up by Aravis discovery, which broadcasts on every interface and is therefore
    only done when `discovery: true` says so."""

    kind: Literal["genicam"]
    address: str | None = None  # IP address of a GigE Vision camera
    serial: str | None = None
    user_id: str | None = None
    discovery: bool = False
    exposure_us: float | None = Field(None, gt=0)
    gain_db: float | None = None
    pixel_format: Literal[GENICAM_PIXEL_FORMATS] = "Mono8"  # type: ignore[valid-type]
    roi: tuple[int, int, int, int] | None = None  # x, y, width, height; None = the sensor's full frame
    packet_size: int | None = Field(None, ge=576, le=9000)  # GigE only; None keeps the camera's
    trigger: Literal["free_run", "software", "line0", "line1", "line2"] = "free_run"
    buffer_count: int = Field(8, ge=2, le=64)
    frame_counter_part_ids: bool = False  # part_id = the camera's frame counter when no trigger message names one

    @model_validator(mode="after")
    def _opened_without_broadcast(self) -> "GenICamSourceConfig":
        if not (self.address or self.serial or self.user_id):
            raise ValueError("name the camera: address (IP), serial or user_id")
        if self.address is None and not self.discovery:
            raise ValueError("without an address the camera can only be found by discovery, which broadcasts "
                             "on every network interface: give `address`, or set `discovery: true`")
        return self


SourceConfig = Annotated[
    SyntheticSourceConfig | ReplaySourceConfig | OpenCVSourceConfig | GenICamSourceConfig,
    Field(discriminator="kind"),
]
# The `kind` of each source config: the one list of source kinds (the loader follows it;
# tests/test_config.py holds the source registry to it).
SOURCE_KINDS: tuple[str, ...] = tuple(
    get_args(m.model_fields["kind"].annotation)[0]
    for m in (SyntheticSourceConfig, ReplaySourceConfig, OpenCVSourceConfig, GenICamSourceConfig))
