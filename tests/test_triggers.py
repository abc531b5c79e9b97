"""Trigger input: message parsing, the part ledger's matching and expiry, the real PULL
socket fed by a PUSH peer over loopback, and a whole pipeline whose free-running camera
inspects only the frames that announced parts claim."""

from __future__ import annotations

import json
import threading
import time

import pytest
import zmq

from pipeline.composition.app import Pipeline
from pipeline.composition.assembly import build_parts
from pipeline.config import parse_config
from pipeline.config.cameras import CameraConfig
from pipeline.parts.sources.trigger_line import TriggerLine
from pipeline.parts.sources.triggers import PartLedger, TriggerInbox, TriggerMessageError, parse_trigger
from tests.pipeline_helpers import VerdictCollector, config_dict
from tests.plc import TriggerPush
from tests.waiting import wait_until
from tests.zmq_helpers import endpoint_in_use

pytestmark = pytest.mark.timeout(30)


@pytest.mark.parametrize("payload, part_id", [
    (b'{"camera": "cam0", "part_id": "A7-004211"}', "A7-004211"),
    (b'{"part_id": 4211}', "4211"),  # camera is optional on a camera's own socket
])
def test_valid_trigger_messages_give_the_part_id(payload, part_id):
    assert parse_trigger(payload, "cam0") == part_id


@pytest.mark.parametrize("payload, complaint", [
    (b"not json", "not JSON"),
    (b'["A1"]', "JSON object"),
    (b'{"camera": "cam1", "part_id": "A1"}', "cam1"),
    (b'{"camera": "cam0"}', "part_id"),
    (b'{"part_id": true}', "part_id"),
    (b'{"part_id": ""}', "1-128"),
    (b'{"part_id": "a\\nb"}', "printable"),
    (b'\xff\xfe', "not JSON"),
])
def test_bad_trigger_messages_say_what_is_wrong(payload, complaint):
    with pytest.raises(TriggerMessageError, match=complaint):
        parse_trigger(payload, "cam0")


def ids(parts) -> list[str]:
    return [p.part_id for p in parts]


def test_frames_claim_parts_oldest_first_and_only_parts_announced_before_them():
    ledger = PartLedger(timeout_ns=1000)
    ledger.announce("A", 100)
    ledger.announce("B", 200)
    assert ledger.claim(150) == "A"
    assert ledger.claim(150) is None, "B was announced after this frame"
    assert ledger.claim(250) == "B"
    assert (ledger.announced, ledger.claimed, ledger.pending) == (2, 2, 0)


def test_a_frame_exposed_after_a_part_s_window_never_judges_it():
    ledger = PartLedger(timeout_ns=100)
    ledger.announce("A", 0)
    ledger.announce("B", 150)
    assert ledger.claim(120) is None, "A's window ended at 100, B's starts at 150"
    assert ids(ledger.overdue(now_ns=120)) == ["A"]
    assert ledger.claim(200) == "B"


def test_a_stale_frame_arriving_in_a_part_s_window_makes_it_stale_not_inspected():
    ledger = PartLedger(timeout_ns=100)
    ledger.announce("A", 1000)
    assert ledger.claim(exposure_ns=900, arrival_ns=1010) is None, "exposed before A was announced"
    assert ledger.claim(exposure_ns=1020, arrival_ns=1030, stale=True) is None, "late for its own timestamp"
    (part,) = ledger.overdue(now_ns=1101)
    assert part.part_id == "A" and part.saw_stale


def test_parts_without_a_frame_expire_in_order_and_shutdown_takes_the_rest():
    ledger = PartLedger(timeout_ns=100)
    for t, part in enumerate("ABC"):
        ledger.announce(part, t * 100)
    assert ids(ledger.overdue(now_ns=250)) == ["A", "B"]
    assert ids(ledger.take_all()) == ["C"]


def test_software_trigger_fires_one_part_at_a_time():
    woken: list[int] = []
    ledger = PartLedger(timeout_ns=2**60)
    ledger.wake_firer = lambda: woken.append(1)
    ledger.announce("A", 0)
    ledger.announce("B", 0)
    assert woken, "an announcement wakes the trigger thread"
    assert ledger.claim(5) is None, "no frame is A's before its trigger"
    assert ledger.next_to_fire(10).part_id == "A"
    assert ledger.next_to_fire(11) is None, "B waits until A got its frame"
    assert ledger.claim(9) is None, "a frame older than A's trigger is not A's"
    assert ledger.claim(12) == "A"
    assert ledger.next_to_fire(13).part_id == "B"
    assert ids(ledger.take_all()) == ["B"]


def test_the_trigger_thread_never_blocks_the_ledger_and_holds_after_a_failed_write():
    """A write that hangs (a dead camera) blocks only the trigger thread; the part still
    expires on time, and the next part is triggered only after the hold."""
    release, calls = threading.Event(), []

    def hanging_fire() -> bool:
        calls.append(time.monotonic())
        release.wait(5)
        return False

    ledger = PartLedger(timeout_ns=50_000_000)
    line = TriggerLine(ledger, hanging_fire, "cam0", hold_s=0.2)
    line.start()
    try:
        t0 = time.monotonic_ns()
        ledger.announce("A", t0)
        ledger.announce("B", t0)
        assert wait_until(lambda: calls, 2)
        assert len(calls) == 1
        expired: list = []
        # ledger.overdue is the capture thread's call, which never waits
        wait_until(lambda: len(expired) >= 2, 2, each=lambda: expired.extend(ledger.overdue(time.monotonic_ns())))
        assert ids(expired) == ["A", "B"], "both windows closed while the write hung"
        release.set()
        ledger.announce("C", time.monotonic_ns())
        assert len(calls) == 1
    finally:
        release.set()
        line.close()
    assert line.failed == 1


def test_overflowing_announcements_are_missed_not_dropped():
    ledger = PartLedger(max_pending=2)
    for part in "ABC":
        ledger.announce(part, 0)
    assert ids(ledger.overdue(now_ns=-1)) == ["A"]


def test_inbox_receives_announcements_over_a_real_socket_and_counts_bad_ones(free_tcp_endpoint):
    camera = CameraConfig.model_validate({"id": "cam0", "source": {"kind": "synthetic"},
                                          "trigger_endpoint": free_tcp_endpoint})
    context = zmq.Context()
    inbox = TriggerInbox.from_config(camera, context)
    push = context.socket(zmq.PUSH)
    push.setsockopt(zmq.LINGER, 0)
    push.connect(free_tcp_endpoint)
    stop = threading.Event()
    inbox.start(stop)
    try:
        push.send(b'{"camera": "cam0", "part_id": "P1"}')
        push.send(b"garbage")
        push.send_multipart([b'{"part_id": "P2"}', b"extra"])
        push.send(b'{"part_id": 3}')
        for _ in range(100):
            if inbox.ledger.announced == 2 and inbox.rejected == 2:
                break
            stop.wait(0.02)
        assert ids(inbox.ledger.take_all()) == ["P1", "3"]
        assert inbox.rejected == 2 and "one message frame" in inbox.last_rejection
    finally:
        stop.set()
        inbox.close()
        push.close()
        context.term()


def test_a_busy_trigger_endpoint_stops_start_up_with_its_name(free_tcp_endpoint, tmp_path):
    from pipeline.composition.app import StartupError

    data = config_dict(f"ipc://{tmp_path}/verdicts")
    data["cameras"][0]["trigger_endpoint"] = free_tcp_endpoint
    data["publisher"]["await_subscriber_ms"] = 0
    with endpoint_in_use(free_tcp_endpoint, zmq.PULL), pytest.raises(StartupError, match="trigger_endpoint"):
        build_parts(parse_config(json.dumps(data)))


def test_free_running_camera_inspects_one_frame_per_announced_part(tmp_path):
    endpoint, triggers = f"ipc://{tmp_path}/verdicts", f"ipc://{tmp_path}/triggers"
    data = config_dict(endpoint, fps=30)
    data["cameras"][0]["trigger_endpoint"] = triggers
    config = parse_config(json.dumps(data))
    collector = VerdictCollector(endpoint)
    pipeline = Pipeline(config, build_parts(config))
    plc = TriggerPush(triggers)
    parts = [f"S-{i}" for i in range(6)]
    try:
        pipeline.start()
        for part in parts:
            plc.announce("cam0", part)
            threading.Event().wait(0.1)
        assert collector.wait_for({"cam0": len(parts)}, timeout_s=10)
        assert pipeline.shutdown(timeout_s=5) == 0
    finally:
        plc.close()
        collector.close()
    verdicts = collector.verdicts["cam0"]
    assert [v["part_id"] for v in verdicts] == parts
    assert all(v["verdict"] in ("PASS", "FAIL") for v in verdicts)
    assert pipeline.telemetry.cameras["cam0"].frames_skipped > 0, "frames between parts are not inspected"
    assert collector.heartbeats[-1]["cameras"]["cam0"]["parts_announced"] == len(parts)
