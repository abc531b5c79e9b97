"""The gateway's YAML schema: which pipelines to follow, which cameras map where, the
fail-safe and handshake timing, and the Modbus / OPC UA outputs.

Same rules as the pipeline's config: frozen models, unknown keys refused, errors from
`pipeline.config.loader.validate_yaml` naming file, line and key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from pipeline.config.cameras import CAMERA_ID_PATTERN
from pipeline.config.loader import ConfigError, validate_yaml
from pipeline.config.models import HttpConfig
from pipeline.config.strict import Strict

# The documented default register map (docs/GATEWAY.md): offsets inside one camera's
# block. Gateway-written registers come first, the PLC-written acknowledge last, so a
# Modbus client writes one contiguous range without touching what the PLC owns.
DEFAULT_REGISTERS: dict[str, int] = {
    "ready": 0,            # 1: pipeline ready, results valid; 0: do not pass parts
    "not_ready_reason": 1,  # NotReadyReason code, 0 when ready
    "health": 2,           # pipeline health code
    "result_counter": 3,   # +1 per new result (1..65535, wraps to 1): the result-ready toggle
    "seq_hi": 4,           # verdict seq, 32 bits, high word first
    "seq_lo": 5,
    "verdict": 6,          # verdict code
    "reason": 7,           # first reason's code, 0 for none
    "ack_state": 8,        # AckState code of the newest result
    "gaps": 9,             # gaps + restarts seen so far (wraps at 65536)
    "part_id": 10,         # part id, ASCII, 2 chars per register, NUL padded
    "ack_seq_hi": 30,      # written by the PLC: the last seq it consumed
    "ack_seq_lo": 31,
}
PART_ID_REGISTERS = 16  # 32 characters
GATEWAY_FIELDS = [k for k in DEFAULT_REGISTERS if not k.startswith("ack_seq")]


class CurveClientConfig(Strict):
    server_key: Path   # the publisher's public key file
    client_keys: Path  # this gateway's certificate (public + secret, mode 0600)


class PipelineSource(Strict):
    """One pipeline to follow."""

    endpoint: str = "tcp://127.0.0.1:5555"
    topic_prefix: str = "inspect"
    curve: CurveClientConfig | None = None


class FailSafeConfig(Strict):
    heartbeat_timeout_ms: int = Field(3000, ge=100)  # no heartbeat this long: not ready
    hold_after_gap_ms: int = Field(2000, ge=0)       # a gap or restart keeps "not ready" this long
    require_health_ok: bool = True                   # DEGRADED/ERROR/STOPPING/STARTING: not ready


class HandshakeConfig(Strict):
    ack_timeout_ms: int = Field(1000, ge=10)  # the PLC must write back the seq within this
    ack_poll_ms: int = Field(50, ge=5)        # how often a Modbus client reads the acknowledge


class ModbusConfig(Strict):
    mode: Literal["client", "server"] = "client"
    host: str = "127.0.0.1"   # client: the PLC's address; server: where to listen
    port: int = Field(502, ge=0, le=65535)
    device_id: int = Field(1, ge=0, le=255)
    base_address: int = Field(0, ge=0, le=65535)  # camera i's block starts at base + i * block_size
    block_size: int = Field(32, ge=1, le=256)
    timeout_ms: int = Field(1000, ge=10)
    reconnect_ms: int = Field(500, ge=10)
    registers: dict[str, int] = Field(default_factory=lambda: dict(DEFAULT_REGISTERS))

    @model_validator(mode="after")
    def _map_fits(self) -> "ModbusConfig":
        unknown = sorted(set(self.registers) - set(DEFAULT_REGISTERS))
        if unknown:
            raise ValueError(f"unknown register names {unknown}; known: {sorted(DEFAULT_REGISTERS)}")
        regs = {**DEFAULT_REGISTERS, **self.registers}
        spans = sorted((o, o + (PART_ID_REGISTERS if k == "part_id" else 1), k) for k, o in regs.items())
        for (_a0, a1, ka), (b0, _, kb) in zip(spans, spans[1:]):
            if b0 < a1:
                raise ValueError(f"registers {ka} and {kb} overlap")
        if spans[-1][1] > self.block_size:
            raise ValueError(f"register {spans[-1][2]} ends at {spans[-1][1]}, past block_size {self.block_size}")
        return self


class OpcUaSecurity(Strict):
    policy: Literal["Basic256Sha256_SignAndEncrypt", "Basic256Sha256_Sign"]
    certificate: Path  # this server's certificate (DER or PEM)
    private_key: Path


class OpcUaConfig(Strict):
    endpoint: str = "opc.tcp://127.0.0.1:4840/inspection/"
    namespace: str = "urn:inspection-pipeline:gateway"
    security: OpcUaSecurity | None = None  # None: SecurityPolicy None (loopback/isolated cell only)


class GatewayConfig(Strict):
    pipelines: tuple[PipelineSource, ...] = Field(default=(PipelineSource(),), min_length=1)
    cameras: tuple[str, ...] = Field(min_length=1)  # order = block index / node order
    fail_safe: FailSafeConfig = FailSafeConfig()
    handshake: HandshakeConfig = HandshakeConfig()
    modbus: ModbusConfig | None = None
    opcua: OpcUaConfig | None = None
    http: HttpConfig = HttpConfig(port=9109)

    @model_validator(mode="after")
    def _sane(self) -> "GatewayConfig":
        import re

        bad = [c for c in self.cameras if not re.match(CAMERA_ID_PATTERN, c)]
        if bad:
            raise ValueError(f"invalid camera ids {bad}")
        if len(set(self.cameras)) != len(self.cameras):
            raise ValueError("camera ids must be unique")
        if self.modbus is None and self.opcua is None:
            raise ValueError("name at least one output: modbus and/or opcua")
        return self


def load_gateway_config(path: str | Path) -> GatewayConfig:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc.strerror or exc}") from None
    config = validate_yaml(text, str(path), GatewayConfig)
    return _resolve(config, path.parent)


def _resolve(config: GatewayConfig, base: Path) -> GatewayConfig:
    """Key and certificate paths relative to the config file's folder."""
    def fix(p: Path) -> Path:
        return p if p.is_absolute() else base / p

    pipelines = tuple(p.model_copy(update={"curve": p.curve.model_copy(update={
        "server_key": fix(p.curve.server_key), "client_keys": fix(p.curve.client_keys)})}) if p.curve else p
        for p in config.pipelines)
    opcua = config.opcua
    if opcua is not None and opcua.security is not None:
        opcua = opcua.model_copy(update={"security": opcua.security.model_copy(update={
            "certificate": fix(opcua.security.certificate), "private_key": fix(opcua.security.private_key)})})
    return config.model_copy(update={"pipelines": pipelines, "opcua": opcua})
