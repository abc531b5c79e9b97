"""ZmqPublisher over real sockets: topics, contiguous seq, heartbeats, bind errors, HWM."""

from __future__ import annotations

import threading
import time

import pytest
import zmq

from pipeline.config.models import PublisherConfig
from pipeline.core.protocol import ProtocolError, decode
from pipeline.parts.publishing import PublisherError, ZmqPublisher
from tests.zmq_helpers import CLASS_NAMES, defect_job, join_sub, make_job, publisher, sub_socket

pytestmark = pytest.mark.timeout(20)


def receive(sub: zmq.Socket) -> tuple[bytes, dict]:
    topic, payload = sub.recv_multipart()
    return topic, decode(payload)


def test_seq_is_contiguous_per_camera_over_tcp(context):
    pub = publisher(context)
    sub = sub_socket(context, pub.endpoint, b"inspect.cam")
    join_sub(pub, sub)
    cameras = ["cam0", "cam1", "cam0", "cam0", "cam1"]
    used = [pub.publish_verdict(make_job(cid, frame_id=i)) for i, cid in enumerate(cameras)]
    assert used == [0, 0, 1, 2, 1]
    got = [receive(sub) for _ in cameras]
    assert [t for t, _ in got] == [b"inspect." + c.encode() for c in cameras]
    assert [(m["camera_id"], m["seq"]) for _, m in got] == list(zip(cameras, used))
    assert dict(pub.last_seq) == {"cam0": 2, "cam1": 1}
    pub.close()


def test_ipc_endpoint(context, tmp_path):
    pub = publisher(context, f"ipc://{tmp_path}/verdicts.sock")
    sub = sub_socket(context, pub.endpoint)
    join_sub(pub, sub)
    pub.publish_verdict(defect_job())
    topic, msg = receive(sub)
    assert topic == b"inspect.cam0" and msg["verdict"] == "FAIL"
    pub.close()


def test_heartbeat_carries_own_seq_and_authoritative_last_seq(context):
    pub = publisher(context, topic_prefix="line3")
    sub = sub_socket(context, pub.endpoint, b"line3._heartbeat")
    join_sub(pub, sub)
    pub.publish_verdict(make_job("cam0"))
    status = {"health": "OK", "uptime_s": 1.0, "cameras": {"cam0": {"state": "STREAMING"}, "cam1": {"state": "STALLED"}}}
    seq_a, seq_b = pub.publish_heartbeat(status), pub.publish_heartbeat(status)
    (topic, first), (_, second) = receive(sub), receive(sub)
    assert topic == b"line3._heartbeat" and seq_b == seq_a + 1
    assert (first["type"], first["seq"], second["seq"]) == ("heartbeat", seq_a, seq_b)
    assert first["cameras"] == {"cam0": {"state": "STREAMING", "last_seq": 0}, "cam1": {"state": "STALLED", "last_seq": -1}}
    assert abs(first["t_ns"] - time.time_ns()) < 5e9
    assert "last_seq" not in status["cameras"]["cam0"], "the caller's dict must not be modified"
    pub.close()


def test_bind_error_names_endpoint_and_reason(context):
    first = publisher(context)
    with pytest.raises(PublisherError, match=r"tcp://127\.0\.0\.1:\d+.*[Aa]ddress already in use"):
        publisher(context, first.endpoint)
    with pytest.raises(PublisherError, match="tcp://no-such-host-xyz:1"):
        publisher(context, "tcp://no-such-host-xyz:1")
    first.close()


def test_full_subscriber_with_nodrop_is_counted_never_blocks(context):
    pub = publisher(context, sndhwm=1, nodrop=True)
    sub = sub_socket(context, pub.endpoint, RCVHWM=1, RCVBUF=4096)
    join_sub(pub, sub)
    sent: list[int] = []

    def flood() -> None:
        for i in range(20_000):  # the subscriber never reads from here on
            pub.publish_verdict(defect_job(frame_id=i))
            sent.append(i)
            if pub.dropped > 100:
                break

    flooder = threading.Thread(target=flood, daemon=True)
    flooder.start()
    flooder.join(10)
    assert not flooder.is_alive(), "publish_verdict blocked on a full subscriber"
    assert pub.dropped > 100
    assert pub.last_seq["cam0"] == sent[-1], "dropped messages still consume their seq"
    pub.close()


def test_plain_pub_drops_silently_at_hwm_without_raising(context):
    pub = publisher(context, sndhwm=1)
    sub = sub_socket(context, pub.endpoint, RCVHWM=1, RCVBUF=4096)
    join_sub(pub, sub)
    for i in range(5_000):
        pub.publish_verdict(defect_job(frame_id=i))
    assert pub.dropped == 0  # libzmq drops per subscriber and does not tell: the SUB sees a gap
    pub.close()


def test_unencodable_verdict_goes_out_as_error(context):
    pub = publisher(context)
    sub = sub_socket(context, pub.endpoint)
    join_sub(pub, sub)
    assert pub.publish_verdict(defect_job(score=float("nan"))) == 0
    _, msg = receive(sub)
    assert (msg["seq"], msg["verdict"], msg["reasons"][0]["code"]) == (0, "ERROR", "bad_output")
    pub.close()


def test_undecided_job_raises_and_consumes_no_seq(context):
    pub = publisher(context)
    with pytest.raises(ProtocolError):
        pub.publish_verdict(make_job().mark("x", verdict=None))
    assert "cam0" not in pub.last_seq
    assert pub.publish_verdict(make_job()) == 0
    pub.close()


def test_constructed_from_parts_and_close_is_idempotent(context):
    sock = context.socket(zmq.PUB)
    sock.setsockopt(zmq.LINGER, 0)
    sock.bind("tcp://127.0.0.1:*")
    pub = ZmqPublisher(sock, "inspect", 30.0, CLASS_NAMES, include_detections=False)
    sub = sub_socket(context, pub.endpoint)
    join_sub(pub, sub)
    pub.publish_verdict(defect_job())
    assert "detections" not in receive(sub)[1]
    pub.close()
    pub.close()
    assert sock.closed


def test_from_config_sets_socket_options(context):
    pub = ZmqPublisher.from_config(
        PublisherConfig(endpoint="tcp://127.0.0.1:*", sndhwm=77, linger_ms=123), context, 30.0, CLASS_NAMES
    )
    sock = pub._socket
    assert (sock.getsockopt(zmq.SNDHWM), sock.getsockopt(zmq.LINGER), sock.getsockopt(zmq.IMMEDIATE)) == (77, 123, 0)
    pub.close()
