"""The gateway's judgements without sockets: fail-safe state, acknowledge, registers,
config errors. Times are passed in, so nothing here waits."""

from __future__ import annotations

import pytest

from pipeline.config import ConfigError
from pipeline.service.gateway.gateway_config import FailSafeConfig, GatewayConfig, ModbusConfig, load_gateway_config
from pipeline.service.gateway.handshake import AckState, AckTracker
from pipeline.service.gateway.registers import RegisterMap, decode_text, encode_text
from pipeline.service.gateway.state import CameraChannel, HealthCode, NotReadyReason, VerdictCode, next_counter

MS = 1_000_000


def channel(**rules) -> CameraChannel:
    return CameraChannel("cam0", 0, FailSafeConfig(heartbeat_timeout_ms=1000, hold_after_gap_ms=500, **rules))


def test_a_channel_starts_not_ready_and_is_ready_only_with_a_fresh_ok_heartbeat():
    ch = channel()
    ch.evaluate(0)
    assert not ch.snapshot.ready and ch.snapshot.not_ready_reason is NotReadyReason.NO_DATA
    ch.on_heartbeat("STARTING", True, 0)
    ch.evaluate(0)
    assert ch.snapshot.not_ready_reason is NotReadyReason.HEALTH
    ch.on_heartbeat("OK", True, 100 * MS)
    assert ch.evaluate(100 * MS) and ch.snapshot.ready
    assert not ch.evaluate(200 * MS)  # no change: sinks are not bothered
    assert ch.evaluate(1101 * MS) and ch.snapshot.not_ready_reason is NotReadyReason.HEARTBEAT_MISSING


def test_a_gap_holds_not_ready_then_recovers_by_itself_and_is_counted():
    ch = channel()
    ch.on_heartbeat("OK", True, 0)
    ch.evaluate(0)
    ch.on_discontinuity(NotReadyReason.GAP, 10 * MS)
    ch.on_heartbeat("OK", True, 20 * MS)
    ch.evaluate(20 * MS)
    assert ch.snapshot.not_ready_reason is NotReadyReason.GAP and ch.snapshot.gaps == 1
    ch.on_heartbeat("OK", True, 600 * MS)
    ch.evaluate(600 * MS)
    assert ch.snapshot.ready


def test_health_not_ok_may_be_allowed_by_config():
    ch = channel(require_health_ok=False)
    ch.on_heartbeat("DEGRADED", True, 0)
    ch.evaluate(0)
    assert ch.snapshot.ready and ch.snapshot.health is HealthCode.DEGRADED


def test_a_verdict_moves_the_counter_and_carries_its_codes():
    ch = channel()
    snap = ch.on_verdict({"seq": 7, "verdict": "FAIL", "part_id": "P-1",
                          "reasons": [{"code": "defect", "class": "scratch"}], "t_publish_ns": 5})
    assert (snap.result_counter, snap.seq, snap.verdict, snap.reason, snap.reasons, snap.part_id) == \
        (1, 7, VerdictCode.FAIL, 1, ("scratch",), "P-1")
    assert ch.on_verdict({"seq": 8, "verdict": "bogus"}).verdict is VerdictCode.ERROR
    assert next_counter(65535) == 1 and next_counter(0) == 1


def test_ack_in_time_late_and_back():
    t = AckTracker(timeout_ms=100)
    t.written(0, 0)
    assert t.acknowledged(0, 10 * MS) is AckState.IN_TIME
    for i in range(1, 6):  # new results keep coming, the PLC stopped acknowledging
        t.written(i, i * 40 * MS)
        t.acknowledged(0, i * 40 * MS)
    assert t.state is AckState.LATE and t.late == 1
    assert t.acknowledged(5, 300 * MS) is AckState.IN_TIME


def test_registers_round_trip_and_a_32_bit_seq():
    m = RegisterMap(ModbusConfig())
    from pipeline.service.gateway.state import CameraSnapshot

    snap = CameraSnapshot("cam0", 0, True, NotReadyReason.NONE, HealthCode.OK, 3, 70000, VerdictCode.PASS, 0,
                          (), "ABC-123")
    back = m.decode(m.encode(snap, AckState.WAITING))
    assert back["seq"] == 70000 and back["part_id"] == "ABC-123" and back["ready"] == 1 and back["ack_state"] == 1
    assert decode_text(encode_text("x" * 40, 16)) == "x" * 32


def test_an_overlapping_register_map_is_refused(tmp_path):
    path = tmp_path / "g.yaml"
    path.write_text("cameras: [cam0]\nmodbus:\n  registers: {verdict: 5}\n")
    with pytest.raises(ConfigError, match="overlap"):
        load_gateway_config(path)


def test_a_config_without_an_output_is_refused():
    with pytest.raises(ValueError, match="at least one output"):
        GatewayConfig(cameras=("cam0",))


def test_the_shipped_example_config_is_valid():
    from tests.pipeline_helpers import ROOT

    config = load_gateway_config(ROOT / "configs" / "gateway.yaml")
    assert config.modbus is not None and config.opcua is not None
