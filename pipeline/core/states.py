"""The states a camera, a stage and the pipeline as a whole can be in, and the moves between them.

Bottom layer, defined once: telemetry stores them, the heartbeat and `/metrics` send their
values, the protocol validates them, health and the status line read them. The values are
the wire's (docs/PROTOCOL.md): camera and health states in capitals, stage states in lower
case, as sent since version 1.

A move not in a state's table is a bug in the code that makes it, so `move` raises
`IllegalTransition` rather than letting the heartbeat report an impossible history.
"""

from __future__ import annotations

from enum import Enum
from typing import TypeVar


class WireState(str, Enum):
    """A state whose str() and format() are its wire value on every Python version."""

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)


class CameraState(WireState):
    CONNECTING = "CONNECTING"  # no link yet
    STREAMING = "STREAMING"  # linked (frames come, or a triggered camera waits for parts)
    STALLED = "STALLED"  # linked but silent past stall_timeout_s (free-running cameras)
    DOWN = "DOWN"  # the link is lost; the source reconnects by itself
    ENDED = "ENDED"  # a finite source has no more frames: final


class StageState(WireState):
    STARTING = "starting"
    RUNNING = "running"
    STOPPED = "stopped"  # drained its input and passed on the end of stream: final
    CRASHED = "crashed"  # its thread raised: final
    ABANDONED = "abandoned"  # woke after shutdown had settled its jobs: final


class Health(WireState):
    STARTING = "STARTING"
    OK = "OK"
    DEGRADED = "DEGRADED"  # running, but a camera is down/stalled or a stage is failing frames
    ERROR = "ERROR"  # a stage crashed; the pipeline is stopping
    STOPPING = "STOPPING"


_CAMERA_MOVES: dict[CameraState, frozenset[CameraState]] = {
    CameraState.CONNECTING: frozenset({CameraState.STREAMING, CameraState.DOWN, CameraState.ENDED}),
    CameraState.STREAMING: frozenset({CameraState.STALLED, CameraState.DOWN, CameraState.ENDED}),
    CameraState.STALLED: frozenset({CameraState.STREAMING, CameraState.DOWN, CameraState.ENDED}),
    CameraState.DOWN: frozenset({CameraState.CONNECTING, CameraState.STREAMING, CameraState.ENDED}),
    CameraState.ENDED: frozenset(),
}
_STAGE_MOVES: dict[StageState, frozenset[StageState]] = {
    StageState.STARTING: frozenset({StageState.RUNNING, StageState.CRASHED}),
    StageState.RUNNING: frozenset({StageState.STOPPED, StageState.CRASHED, StageState.ABANDONED}),
    StageState.STOPPED: frozenset(),
    StageState.CRASHED: frozenset(),
    StageState.ABANDONED: frozenset(),
}
# The stored health; DEGRADED is never stored, it is read off cameras and stages while OK.
_HEALTH_MOVES: dict[Health, frozenset[Health]] = {
    Health.STARTING: frozenset({Health.OK, Health.ERROR, Health.STOPPING}),
    Health.OK: frozenset({Health.ERROR, Health.STOPPING}),
    Health.DEGRADED: frozenset(),
    Health.STOPPING: frozenset({Health.ERROR}),  # a stage may still crash while draining
    Health.ERROR: frozenset(),
}
LEGAL_MOVES: dict[type[WireState], dict[WireState, frozenset[WireState]]] = {
    CameraState: _CAMERA_MOVES,  # type: ignore[dict-item]
    StageState: _STAGE_MOVES,  # type: ignore[dict-item]
    Health: _HEALTH_MOVES,  # type: ignore[dict-item]
}

S = TypeVar("S", bound=WireState)


class IllegalTransition(RuntimeError):
    """Code tried a move its state's table does not allow."""


def can_move(current: WireState, new: WireState) -> bool:
    """True if `current -> new` is a legal move (staying put always is)."""
    return new is current or new in LEGAL_MOVES[type(current)][current]


def move(current: S, new: S) -> S:
    """`new`, after checking the move from `current` is legal."""
    if not can_move(current, new):
        raise IllegalTransition(f"{type(current).__name__} cannot move from {current} to {new}")
    return new
