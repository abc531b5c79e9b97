"""Camera, stage and health states (pipeline.core.states): one definition, legal moves only, the
wire's values in the heartbeat, the protocol refusing a state that does not exist."""

import json
import time

import pytest

from pipeline.core.protocol import ProtocolError, encode_heartbeat
from pipeline.core.states import CameraState, Health, IllegalTransition, StageState, can_move, move
from pipeline.core.telemetry import Telemetry


def test_values_are_what_the_wire_has_always_carried():
    assert [s.value for s in CameraState] == ["CONNECTING", "STREAMING", "STALLED", "DOWN", "ENDED"]
    assert [s.value for s in StageState] == ["starting", "running", "stopped", "crashed", "abandoned"]
    assert [s.value for s in Health] == ["STARTING", "OK", "DEGRADED", "ERROR", "STOPPING"]
    assert f"{CameraState.DOWN}" == str(CameraState.DOWN) == "DOWN"  # log lines and status line


@pytest.mark.parametrize("current, new", [
    (CameraState.CONNECTING, CameraState.STREAMING), (CameraState.STREAMING, CameraState.STALLED),
    (CameraState.STALLED, CameraState.STREAMING), (CameraState.STREAMING, CameraState.DOWN),
    (CameraState.DOWN, CameraState.STREAMING), (CameraState.STREAMING, CameraState.ENDED),
    (StageState.STARTING, StageState.RUNNING), (StageState.RUNNING, StageState.STOPPED),
    (StageState.RUNNING, StageState.CRASHED), (Health.STARTING, Health.OK), (Health.OK, Health.STOPPING),
    (Health.STOPPING, Health.ERROR), (Health.ERROR, Health.ERROR),
])
def test_legal_moves(current, new):
    assert can_move(current, new) and move(current, new) is new


@pytest.mark.parametrize("current, new", [
    (CameraState.ENDED, CameraState.STREAMING), (CameraState.CONNECTING, CameraState.STALLED),
    (CameraState.DOWN, CameraState.STALLED), (StageState.STOPPED, StageState.RUNNING),
    (StageState.CRASHED, StageState.RUNNING), (Health.ERROR, Health.OK), (Health.STOPPING, Health.OK),
])
def test_illegal_moves_raise_naming_both_states(current, new):
    assert not can_move(current, new)
    with pytest.raises(IllegalTransition, match=f"from {current.value} to {new.value}"):
        move(current, new)


def test_heartbeat_carries_the_values_and_health_follows_cameras():
    t = Telemetry(["cam0"])
    t.set_health(Health.OK)
    t.stage("infer").move_to(StageState.RUNNING)
    assert t.cameras["cam0"].move_to(CameraState.STREAMING)
    assert t.current_health() is not Health.OK  # streaming, but no frame delivered yet
    t.cameras["cam0"].last_frame_ns = time.monotonic_ns()
    assert t.current_health() is Health.OK
    t.cameras["cam0"].move_to(CameraState.DOWN)
    msg = json.loads(encode_heartbeat(t.snapshot(), 0, 0))
    assert msg["health"] == "DEGRADED"
    assert msg["cameras"]["cam0"]["state"] == "DOWN" and msg["stages"]["infer"]["state"] == "running"


@pytest.mark.parametrize("status, what", [
    ({"health": "FINE"}, "heartbeat health"),
    ({"health": "OK", "cameras": {"cam0": {"state": "ASLEEP"}}}, "camera cam0 state"),
    ({"health": "OK", "stages": {"infer": {"state": "RUNNING"}}}, "stage infer state"),
])
def test_protocol_refuses_a_state_that_does_not_exist(status, what):
    with pytest.raises(ProtocolError, match=what):
        encode_heartbeat(status, 0, 0)
