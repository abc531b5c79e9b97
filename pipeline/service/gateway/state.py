"""Per-camera result and the fail-safe judgement: is this camera's result trustworthy?

Owns the codes a PLC sees (verdict, reason, health, not-ready reason: docs/GATEWAY.md)
and `CameraChannel`, the state machine that turns verdicts, heartbeats, gaps, restarts
and silence into one `CameraSnapshot`. Fail-safe by default: the channel starts "not
ready" and is ready only while heartbeats are fresh, no gap or restart was seen within
`hold_after_gap_ms`, and (unless told otherwise) the pipeline reports health OK. It
recovers by itself once all of that holds again. Not thread-safe: the hub holds a lock.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from enum import IntEnum
from typing import Any

from pipeline.core.messages import Outcome, ReasonCode
from pipeline.service.gateway.gateway_config import FailSafeConfig

log = logging.getLogger(__name__)


class VerdictCode(IntEnum):
    NONE = 0
    PASS = 1
    FAIL = 2
    NOT_INSPECTED = 3
    ERROR = 4


# Reason codes: 0 = no reason, then ReasonCode in declaration order (1 = defect, ...).
REASON_NUMBERS: dict[str, int] = {code.value: i + 1 for i, code in enumerate(ReasonCode)}


class HealthCode(IntEnum):
    UNKNOWN = 0
    STARTING = 1
    OK = 2
    DEGRADED = 3
    ERROR = 4
    STOPPING = 5


class NotReadyReason(IntEnum):
    NONE = 0               # ready
    NO_DATA = 1            # no heartbeat heard yet (gateway just started, pipeline not up)
    HEARTBEAT_MISSING = 2  # heartbeats stopped for longer than heartbeat_timeout_ms
    GAP = 3                # verdicts were lost between pipeline and gateway
    RESTART = 4            # the pipeline restarted (seq went back)
    HEALTH = 5             # the pipeline reports health other than OK
    CAMERA_MISSING = 6     # the pipeline's heartbeat does not list this camera


@dataclass(frozen=True)
class CameraSnapshot:
    """Everything a sink writes for one camera; `result_counter` moves on each new result."""

    camera_id: str
    index: int
    ready: bool = False
    not_ready_reason: NotReadyReason = NotReadyReason.NO_DATA
    health: HealthCode = HealthCode.UNKNOWN
    result_counter: int = 0
    seq: int = 0
    verdict: VerdictCode = VerdictCode.NONE
    reason: int = 0
    reasons: tuple[str, ...] = ()
    part_id: str = ""
    t_capture_ns: int = 0
    t_publish_ns: int = 0
    gaps: int = 0

    def is_new_result(self, written_counter: int | None) -> bool:
        """True when this snapshot carries a result the sink has not written yet
        (`written_counter`: the counter it wrote last, None before its first write)."""
        return self.result_counter != 0 and self.result_counter != written_counter


def next_counter(counter: int) -> int:
    """1..65535 then 1 again: 0 only means "no result yet", and it fits one register."""
    return counter % 65535 + 1


@dataclass
class CameraChannel:
    camera_id: str
    index: int
    rules: FailSafeConfig
    snapshot: CameraSnapshot = field(init=False)
    last_heartbeat_ns: int | None = None
    hold_until_ns: int = 0
    hold_reason: NotReadyReason = NotReadyReason.NONE
    listed: bool = True  # the last heartbeat listed this camera

    def __post_init__(self) -> None:
        self.snapshot = CameraSnapshot(self.camera_id, self.index)

    def on_verdict(self, msg: dict[str, Any]) -> CameraSnapshot:
        reasons = [r for r in msg.get("reasons") or () if isinstance(r, dict)]
        s = self.snapshot
        self.snapshot = replace(
            s, result_counter=next_counter(s.result_counter), seq=int(msg["seq"]),
            verdict=_verdict_code(msg.get("verdict")),
            reason=REASON_NUMBERS.get(str(reasons[0].get("code")), 0) if reasons else 0,
            reasons=tuple(str(r.get("class") or r.get("code")) for r in reasons),
            part_id=str(msg.get("part_id") or ""),
            t_capture_ns=_int(msg.get("t_capture_ns")), t_publish_ns=_int(msg.get("t_publish_ns")))
        return self.snapshot

    def on_heartbeat(self, health: Any, listed: bool, now_ns: int) -> None:
        self.last_heartbeat_ns = now_ns
        self.listed = listed
        self.snapshot = replace(self.snapshot, health=_health_code(health))

    def on_discontinuity(self, reason: NotReadyReason, now_ns: int) -> None:
        """A gap or a restart: counted, and not ready for hold_after_gap_ms. A gap during a
        restart's hold (the new instance's verdicts we never got) keeps RESTART as the reason."""
        if not (reason is NotReadyReason.GAP and self.hold_reason is NotReadyReason.RESTART
                and now_ns < self.hold_until_ns):
            self.hold_reason = reason
        self.hold_until_ns = now_ns + self.rules.hold_after_gap_ms * 1_000_000
        self.snapshot = replace(self.snapshot, gaps=(self.snapshot.gaps + 1) % 65536)

    def evaluate(self, now_ns: int) -> bool:
        """Recompute ready / not-ready; True when that changed (the sinks must hear)."""
        reason = self._reason(now_ns)
        s = self.snapshot
        if reason is s.not_ready_reason and s.ready is (reason is NotReadyReason.NONE):
            return False
        self.snapshot = replace(s, ready=reason is NotReadyReason.NONE, not_ready_reason=reason)
        if reason is NotReadyReason.NONE:
            log.info("%s: pipeline ready again", self.camera_id)
        else:
            log.warning("%s: PIPELINE NOT READY (%s)", self.camera_id, reason.name)
        return True

    def _reason(self, now_ns: int) -> NotReadyReason:
        if self.last_heartbeat_ns is None:
            return NotReadyReason.NO_DATA
        if now_ns - self.last_heartbeat_ns > self.rules.heartbeat_timeout_ms * 1_000_000:
            return NotReadyReason.HEARTBEAT_MISSING
        if now_ns < self.hold_until_ns:
            return self.hold_reason
        if not self.listed:
            return NotReadyReason.CAMERA_MISSING
        if self.rules.require_health_ok and self.snapshot.health is not HealthCode.OK:
            return NotReadyReason.HEALTH
        return NotReadyReason.NONE


def _verdict_code(value: Any) -> VerdictCode:
    try:
        return VerdictCode[Outcome(value).value]
    except ValueError:
        return VerdictCode.ERROR  # an unknown verdict is never passed as good


def _health_code(value: Any) -> HealthCode:
    try:
        return HealthCode[str(value)]
    except KeyError:
        return HealthCode.UNKNOWN


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0
