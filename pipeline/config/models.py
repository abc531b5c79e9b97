"""Typed, frozen configuration models: the only input of the pipeline.

Owns the schema of the YAML file but its `model:` section (`pipeline.config.model`, one
class per backend) and its `cameras:` section (`pipeline.config.cameras`, each camera's
`source:` in `pipeline.config.sources`). Every model forbids unknown keys (`pipeline.config.strict`) so a
misspelt key is an error, not a silently ignored default. Stages receive only their own
section.
Nothing here opens a file or a device; `pipeline.config.loader` turns YAML into these.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from pipeline.config.cameras import CameraConfig
from pipeline.config.model import ModelConfig
from pipeline.config.strict import Strict

TOPIC_PREFIX_PATTERN = r"^[A-Za-z0-9_.-]{1,64}$"


# --------------------------------------------------------------------------- rules

Point = tuple[float, float]


class ClassRuleConfig(Strict):
    """When detections of one class make a part FAIL."""

    min_confidence: float = Field(0.5, ge=0.0, le=1.0)
    min_area_px2: float = Field(0.0, ge=0.0)
    min_area_mm2: float | None = Field(None, ge=0.0)
    max_count: int = Field(0, ge=0)  # FAIL when more than this many qualifying detections


class RoiConfig(Strict):
    """Polygons in source pixels; a detection counts when its centre is inside."""

    include: tuple[tuple[Point, ...], ...] = ()
    exclude: tuple[tuple[Point, ...], ...] = ()

    @field_validator("include", "exclude")
    @classmethod
    def _polygons(cls, value: tuple[tuple[Point, ...], ...]) -> tuple[tuple[Point, ...], ...]:
        for polygon in value:
            if len(polygon) < 3:
                raise ValueError("a polygon needs at least 3 points [x, y]")
        return value


class RulesConfig(Strict):
    default: ClassRuleConfig = ClassRuleConfig()
    classes: dict[str, ClassRuleConfig] = Field(default_factory=dict)
    ignore_classes: tuple[str, ...] = ()
    roi: RoiConfig = RoiConfig()


# --------------------------------------------------------------------------- plumbing


class Overflow(str, Enum):
    DROP_OLDEST = "drop_oldest"  # shed the frame closest to its deadline
    DROP_NEWEST = "drop_newest"  # refuse the incoming frame
    BLOCK = "block"  # back-pressure upstream (bounded wait, then drop_newest)


class QueueConfig(Strict):
    size: int = Field(4, ge=1, le=4096)
    overflow: Overflow = Overflow.DROP_OLDEST
    block_timeout_ms: int = Field(5, ge=0)


class PublishQueueConfig(Strict):
    """The publish stage's input never sheds (a verdict is never lost): size is the level
    above which the heartbeat reports the queue as backed up."""

    size: int = Field(256, ge=1, le=1_000_000)


def auto_queue_size(cameras: int, max_batch: int) -> int:
    """The preprocess/infer queue size a config leaves out: room for two frames per camera
    and two batches, at least QueueConfig's default 4 (one camera, batch 1: unchanged)."""
    return max(QueueConfig().size, 2 * cameras, 2 * max_batch)


class QueuesConfig(Strict):
    """Each queue is named after the stage that consumes it. In a pipeline file the
    preprocess and infer sizes left out follow the line (`auto_queue_size`)."""

    preprocess: QueueConfig = QueueConfig()  # capture -> preprocess
    infer: QueueConfig = QueueConfig()  # preprocess -> infer
    decide: QueueConfig = QueueConfig(size=16)  # infer -> decide
    publish: PublishQueueConfig = PublishQueueConfig()  # decide (and shed jobs) -> publish


class CurveConfig(Strict):
    """ZeroMQ CURVE on the publisher: traffic encrypted, only listed gateways may subscribe.

    Key files are ZeroMQ certificates (`pipeline curve-keys` writes them). The secret key
    file must not be readable by group or others (mode 0600), or the daemon refuses it.
    """

    server_secret_key_file: Path
    server_public_key_file: Path | None = None  # when given, must match the secret file's public key
    allowed_clients: tuple[Path, ...] = Field(min_length=1)  # public key files, or directories of *.key files


class PublisherConfig(Strict):
    endpoint: str = "tcp://127.0.0.1:5555"
    topic_prefix: str = Field("inspect", pattern=TOPIC_PREFIX_PATTERN)
    heartbeat_ms: int = Field(1000, ge=50, le=60_000)
    linger_ms: int = Field(500, ge=0, le=5000)
    sndhwm: int = Field(10_000, ge=1)
    include_detections: bool = True
    # At start-up, wait this long for a first subscriber before the cameras start, so a
    # gateway that (re)connects as the daemon starts does not miss the first verdicts.
    await_subscriber_ms: int = Field(1000, ge=0, le=60_000)
    # ZMQ_XPUB_NODROP: at the send high-water mark a message is refused and counted in the
    # heartbeat's `publisher_dropped`, instead of being dropped silently for the one slow
    # subscriber; the price is that one stalled subscriber costs every subscriber that message.
    nodrop: bool = False
    curve: CurveConfig | None = None  # None: plain TCP, anyone who can connect may subscribe
    # Limits on what peers can make the daemon hold (docs/PROTOCOL.md "Limits of the PUB
    # port"): a larger inbound message drops its connection unread; more distinct
    # subscriptions than this are ignored and counted.
    max_inbound_bytes: int = Field(1024, ge=256, le=65_536)
    max_subscriptions: int = Field(1024, ge=1, le=100_000)
    # Per TCP peer: at most this many connected (more are dropped at once and counted), and
    # each may send at most peer_burst_bytes + peer_rate_bytes_s per second connected
    # (a gateway sends a handshake and its subscriptions, and no more unless it enables
    # ZMTP heartbeats: a ping of ~10 bytes per interval). The rate also bounds what a slow
    # flooder can make libzmq hold over time (docs/PROTOCOL.md "Limits of the PUB port").
    max_gateways: int = Field(64, ge=1, le=10_000)
    peer_burst_bytes: int = Field(16_384, ge=1024)
    peer_rate_bytes_s: int = Field(64, ge=16)


class LatePolicy(str, Enum):
    FAIL_SAFE = "fail_safe"  # a late part is FAIL (reason: deadline)
    NOT_INSPECTED = "not_inspected"  # a late part is NOT_INSPECTED (reason: deadline)
    REPORT = "report"  # keep the verdict, only flag it late


# --------------------------------------------------------------------------- daemon


class HttpConfig(Strict):
    """The /metrics (Prometheus) and /healthz endpoint; loopback only unless told."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(9108, ge=0, le=65535)  # 0: any free port (the log names it)
    # Served by waitress: one I/O thread for every connection, `threads` answering requests.
    # Beyond `max_connections` open connections no new one is accepted until some close;
    # a connection idle for `idle_timeout_s` is closed (docs/OPERATIONS.md).
    max_connections: int = Field(2000, ge=1, le=60_000)
    idle_timeout_s: float = Field(10.0, gt=0, le=3600)
    threads: int = Field(2, ge=1, le=16)


class ArchiveConfig(Strict):
    """Failed-part archive: raw + annotated image and provenance of each saved frame."""

    enabled: bool = False
    path: Path = Path("/var/lib/inspection-pipeline/archive")
    quota_mb: float = Field(2048.0, gt=0)  # oldest frames are removed first beyond this
    max_queue: int = Field(32, ge=1, le=10_000)  # frames waiting to be written; more are skipped
    save: tuple[Literal["FAIL", "ERROR", "NOT_INSPECTED", "PASS"], ...] = ("FAIL", "ERROR")
    jpeg_quality: int = Field(90, ge=10, le=100)  # of the annotated copy; the raw copy is PNG


class LoggingConfig(Strict):
    format: Literal["plain", "json"] = "plain"
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


class WatchdogConfig(Strict):
    """A stage busy on one batch (or with waiting input and no progress) for longer than
    `stage_stall_s` is stuck: systemd watchdog pings stop and /healthz turns 503."""

    stage_stall_s: float = Field(3.0, gt=0, le=3600)


class HealthConfig(Strict):
    """Health from verdict outcomes per camera: the last `window_verdicts`, none older than
    `window_s` (docs/OPERATIONS.md "Health"). DEGRADED above a share, once `min_verdicts`
    are in the window; ERROR when verdicts keep coming but none was a PASS or FAIL for `idle_s`."""

    window_verdicts: int = Field(50, ge=1, le=100_000)
    window_s: float = Field(30.0, gt=0, le=3600)
    min_verdicts: int = Field(20, ge=1)
    shed_share: float = Field(0.5, ge=0, le=1)
    bad_output_share: float = Field(0.2, ge=0, le=1)
    error_share: float = Field(0.2, ge=0, le=1)
    idle_s: float = Field(30.0, gt=0, le=86_400)


# Python's own switch interval, and the one measured better with a GPU-resident backend:
# on the GPU lab (H200, 8 cameras x 250 fps, 2026-12-01) 0.5 ms cut NOT_INSPECTED from 62%
# to 23% (docs/BENCHMARKS.md): the stage threads hand the GIL on sooner while the GPU works.
PYTHON_SWITCH_INTERVAL_MS = 5.0
GPU_SWITCH_INTERVAL_MS = 0.5


class RuntimeConfig(Strict):
    """The process the pipeline runs in. `switch_interval_ms`: `sys.setswitchinterval`
    for the run; null picks 0.5 ms with a GPU-resident backend, Python's 5 ms otherwise.
    `cpus`: the CPUs the capture and stage threads run on (Linux; null: anywhere), see
    `pipeline.composition.cpu_affinity`."""

    switch_interval_ms: float | None = Field(None, gt=0, le=100)
    cpus: tuple[Annotated[int, Field(ge=0)], ...] | None = Field(None, min_length=1)

    @field_validator("cpus")
    @classmethod
    def _each_cpu_once(cls, cpus: tuple[int, ...] | None) -> tuple[int, ...] | None:
        if cpus is not None and len(set(cpus)) != len(cpus):
            raise ValueError(f"names a CPU twice: {list(cpus)}")
        return cpus

    def switch_interval_for(self, gpu_resident: bool) -> float:
        """The interval in ms for a backend that is (or is not) GPU-resident."""
        if self.switch_interval_ms is not None:
            return self.switch_interval_ms
        return GPU_SWITCH_INTERVAL_MS if gpu_resident else PYTHON_SWITCH_INTERVAL_MS


class PipelineConfig(Strict):
    """The whole file."""

    cameras: tuple[CameraConfig, ...] = Field(min_length=1)
    model: ModelConfig
    rules: RulesConfig = RulesConfig()
    budget_ms: float = Field(30.0, gt=0, le=60_000)
    late_policy: LatePolicy = LatePolicy.FAIL_SAFE
    queues: QueuesConfig = QueuesConfig()
    publisher: PublisherConfig = PublisherConfig()
    http: HttpConfig = HttpConfig()
    archive: ArchiveConfig = ArchiveConfig()
    logging: LoggingConfig = LoggingConfig()
    watchdog: WatchdogConfig = WatchdogConfig()
    health: HealthConfig = HealthConfig()
    runtime: RuntimeConfig = RuntimeConfig()

    @model_validator(mode="before")
    @classmethod
    def _queue_sizes_for_the_line(cls, data: Any) -> Any:
        """Fill the preprocess and infer queue sizes a file leaves out from its cameras and
        batch: cameras triggered together put one frame each into the preprocess queue at
        the same instant, and a batch of max_batch forms only from a queue that holds it."""
        if not isinstance(data, dict) or not isinstance(data.get("cameras"), (list, tuple)):
            return data
        queues = data.get("queues", {})
        if not isinstance(queues, dict):
            return data  # a built QueuesConfig: sizes already chosen
        model = data.get("model")
        batch = model.get("max_batch", 1) if isinstance(model, dict) else 1
        batch = batch if isinstance(batch, int) else 1  # a bad value fails in its own field
        wanted = {"preprocess": auto_queue_size(len(data["cameras"]), 1),
                  "infer": auto_queue_size(len(data["cameras"]), batch)}
        filled = dict(queues)
        for name, size in wanted.items():
            section = filled.get(name, {})
            if isinstance(section, dict) and "size" not in section:
                filled[name] = {**section, "size": size}
        return {**data, "queues": filled}

    @model_validator(mode="after")
    def _unique_camera_ids(self) -> "PipelineConfig":
        ids = [c.id for c in self.cameras]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise ValueError(f"camera ids must be unique, repeated: {duplicates}")
        return self

    @model_validator(mode="after")
    def _batch_fits_infer_queue(self) -> "PipelineConfig":
        # The infer stage gathers one job in hand plus what waits in its queue, so a batch
        # larger than queues.infer.size + 1 can never form (measured: docs/BENCHMARKS.md).
        size, batch = self.queues.infer.size, self.model.max_batch
        if batch > size + 1:
            raise ValueError(f"model.max_batch {batch} can never fill: queues.infer.size {size} holds at most "
                             f"{size} frames beside the one in hand; set queues.infer.size to at least {batch - 1}")
        return self

    @model_validator(mode="after")
    def _mm_rules_need_scale(self) -> "PipelineConfig":
        uses_mm = any(r.min_area_mm2 for r in [self.rules.default, *self.rules.classes.values()])
        missing = [c.id for c in self.cameras if c.mm_per_px is None]
        if uses_mm and missing:
            raise ValueError(f"rules use min_area_mm2 but cameras {missing} have no mm_per_px")
        return self
