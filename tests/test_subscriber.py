"""`subscribe_main` against a real publisher: lines, gaps, restarts, exit codes, bad input."""

from __future__ import annotations

import json
import threading
import time

import pytest
import zmq

from pipeline.core.protocol import encode_verdict, verdict_topic
from pipeline.service.subscriber import SeqTracker, format_verdict, subscribe_main
from tests.zmq_helpers import CLASS_NAMES, SubscriberRun, defect_job, make_job, publisher, rebound_publisher, wait_joined

pytestmark = pytest.mark.timeout(20)


@pytest.fixture
def pub(context):
    p = publisher(context)
    yield p
    p.close()


def start(pub, **kwargs) -> SubscriberRun:
    """A subscriber that has joined: it printed (or dumped) a heartbeat."""
    run = SubscriberRun(pub.endpoint, **kwargs)
    marker = '"type":"heartbeat"' if kwargs.get("json_lines") else "[heartbeat]"
    wait_joined(pub, lambda: run.saw(marker))
    return run


def send_raw_verdict(pub, camera_id: str, seq: int, frame_id: int = 0) -> None:
    payload = encode_verdict(make_job(camera_id, frame_id), seq, time.time_ns(), time.monotonic_ns(), 30.0, CLASS_NAMES)
    pub._socket.send_multipart([verdict_topic("inspect", camera_id), payload])


def test_prints_verdicts_and_heartbeats_then_exits_at_count(pub):
    run = start(pub, count=3)
    pub.publish_verdict(make_job("cam0", 0, part_id="P-1"))
    pub.publish_verdict(defect_job("cam1", 0))
    pub.publish_heartbeat({"health": "OK", "counts": {"PASS": 1, "FAIL": 1}})
    pub.publish_verdict(make_job("cam0", 1, late=True))
    assert run.finish() == 0
    out = run.out.getvalue()
    assert "cam0 seq=0 frame=0 part=P-1 PASS 12." in out
    assert "cam1 seq=0 frame=0 part=- FAIL " in out and "scratch 0.91 @[10,20,50,60]" in out
    assert "[heartbeat] OK" in out and "PASS=1 FAIL=1" in out
    assert out.rstrip().endswith("late")
    assert "3 verdicts (cam0 2, cam1 1)" in run.err.getvalue()


def test_gap_is_reported_with_the_number_lost(pub):
    run = start(pub, count=4)
    pub.publish_verdict(make_job("cam0", 0))
    pub.publish_verdict(make_job("cam0", 1))
    send_raw_verdict(pub, "cam0", seq=4)
    send_raw_verdict(pub, "cam0", seq=5)
    assert run.finish() == 0
    gaps = [line for line in run.lines() if line.startswith("GAP")]
    assert gaps == ["GAP cam0: expected seq 2, got 4 (2 verdicts lost)"]
    assert "1 gaps (2 lost)" in run.err.getvalue()


def test_seq_going_backwards_is_a_restart(pub):
    run = start(pub, count=3)
    for seq in (119, 120, 0):
        send_raw_verdict(pub, "cam0", seq)
    assert run.finish() == 0
    assert "RESTART cam0: seq went from 120 to 0 (publisher restarted)" in run.lines()


def test_heartbeat_last_seq_reveals_a_trailing_gap(pub):
    run = start(pub, timeout_s=0.5)
    pub.publish_verdict(make_job("cam0", 0))
    send_raw_verdict(pub, "cam0", seq=1)
    pub._last_seq["cam0"] = 3  # the publisher "sent" 2 and 3, which never arrived
    pub.publish_heartbeat({"health": "OK", "cameras": {"cam0": {"state": "STREAMING"}}})
    run.wait_for("GAP cam0: expected seq 2, heartbeat says last was 3 (2 verdicts lost before heartbeat)")
    pub.publish_verdict(make_job("cam0", 4))  # seq 4: contiguous with the heartbeat's baseline
    run.wait_for("cam0 seq=4")
    assert sum(line.startswith("GAP") for line in run.lines()) == 1
    assert run.finish() == 0


def test_timeout_before_count_exits_1(pub):
    run = start(pub, count=5, timeout_s=0.3)
    pub.publish_verdict(make_job())
    assert run.finish() == 1
    assert "timed out" in run.err.getvalue()


def test_idle_timeout_without_count_exits_0(pub):
    run = start(pub, timeout_s=0.3)
    assert run.finish() == 0


def test_json_lines_prints_raw_payloads_and_keeps_notes_off_stdout(pub):
    run = start(pub, count=2, json_lines=True)
    pub.publish_verdict(defect_job("cam0", 0))
    send_raw_verdict(pub, "cam0", seq=3)
    assert run.finish() == 0
    messages = [json.loads(line) for line in run.lines()]  # every stdout line is JSON
    verdicts = [m for m in messages if m["type"] == "verdict"]
    assert [m["seq"] for m in verdicts] == [0, 3]
    assert "GAP cam0" in run.err.getvalue()


def test_malformed_messages_are_warned_about_and_skipped(pub):
    run = start(pub, count=1)
    sock = pub._socket
    sock.send(b"inspect.cam0")  # one frame only
    sock.send_multipart([b"inspect.cam0", b"{not json"])
    sock.send_multipart([b"inspect.cam0", b'{"schema":1,"type":"verdict","seq":"x"}'])
    sock.send_multipart([b"inspect.cam0", b'{"schema":1,"type":"future-thing"}'])
    pub.publish_verdict(make_job())
    assert run.finish() == 0
    warnings = [line for line in run.lines() if line.startswith("WARNING malformed")]
    assert len(warnings) == 3
    assert "cam0 seq=0" in run.out.getvalue()


def test_topic_matches_whole_segments_only(pub):
    run = start(pub, topic="inspect.cam1", count=1)
    pub.publish_verdict(make_job("cam10", 0))
    pub.publish_verdict(make_job("cam1", 0))
    assert run.finish() == 0
    assert "cam10" not in run.out.getvalue() and "cam1 seq=0" in run.out.getvalue()


def test_unusable_endpoint_exits_2(capsys):
    assert subscribe_main("bogus://x", timeout_s=0.1) == 2
    assert "bogus://x" in capsys.readouterr().err


def test_keyboard_interrupt_exits_0_with_summary(monkeypatch, capsys, pub):
    original = zmq.Socket.recv_multipart

    def interrupted(self, *args, **kwargs):
        if threading.current_thread() is not threading.main_thread():  # the publisher's peer guard
            return original(self, *args, **kwargs)
        raise KeyboardInterrupt  # Ctrl-C reaches the main thread only, as in a terminal

    monkeypatch.setattr(zmq.Socket, "recv_multipart", interrupted)
    assert subscribe_main(pub.endpoint) == 0
    assert "summary: interrupted" in capsys.readouterr().err


def test_seq_tracker_first_seq_is_a_baseline_not_a_gap():
    tracker = SeqTracker()
    assert tracker.on_verdict("cam0", 41) is None  # joined late: fine
    assert tracker.on_verdict("cam0", 42) is None
    assert tracker.on_verdict("cam0", 45) == "GAP cam0: expected seq 43, got 45 (2 verdicts lost)"
    assert tracker.on_heartbeat_last_seq("cam1", 9) is None
    assert tracker.on_verdict("cam1", 10) is None
    assert (tracker.gaps, tracker.lost, tracker.restarts) == (1, 2, 0)


def test_format_verdict_tolerates_missing_fields():
    assert format_verdict({"verdict": "SOMETHING_NEW"}) == "None seq=None frame=None part=- SOMETHING_NEW ?ms"


def test_watching_one_camera_ignores_other_cameras_in_heartbeats(pub):
    run = start(pub, topic="inspect.cam1", timeout_s=0.5)
    pub.publish_verdict(make_job("cam0", 0))
    pub.publish_verdict(make_job("cam0", 1))
    pub.publish_heartbeat({"health": "OK"})
    pub.publish_verdict(make_job("cam1", 0))
    run.wait_for("cam1 seq=0")
    pub.publish_heartbeat({"health": "OK"})
    run.wait_for("[heartbeat] OK")
    assert "GAP" not in run.out.getvalue() and "cam0 seq" not in run.out.getvalue()
    assert run.finish() == 0


def test_a_restart_across_a_disconnection_is_reported_with_what_was_missed(context, free_tcp_endpoint):
    """The new instance's seq has passed the old one's when the gateway is back: without the
    instance id that reads as an ordinary gap of 5; it is a restart and 10 lost from the new one."""
    old = publisher(context, free_tcp_endpoint)
    run = start(old, timeout_s=1.5)
    for frame in range(5):
        old.publish_verdict(make_job("cam0", frame))
    run.wait_for("cam0 seq=4")
    old.close()
    new = rebound_publisher(context, free_tcp_endpoint)
    try:
        for frame in range(10):  # nobody is subscribed yet: these never reach the gateway
            new.publish_verdict(make_job("cam0", frame))
        wait_joined(new, lambda: run.saw(f"instance {old.instance_id} -> {new.instance_id}"))
        new.publish_verdict(make_job("cam0", 10))
        run.wait_for("cam0 seq=10")
        assert run.finish(10) == 0
    finally:
        new.close()
    notes = [line for line in run.lines() if line.startswith(("RESTART", "GAP"))]
    assert notes[0].startswith(f"RESTART: publisher instance {old.instance_id} -> {new.instance_id}; "
                               "last received from the old one: cam0 seq 4.")
    assert notes[1:] == ["GAP cam0: expected seq 0, heartbeat says last was 9 (10 verdicts lost before heartbeat)"]
    assert "1 restarts" in run.err.getvalue()
