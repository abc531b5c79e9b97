"""Helpers for the publisher/subscriber tests: real sockets, sample jobs, slow-joiner waits.

Every socket made here has LINGER 0 and a receive timeout, so a failing test fails
fast instead of hanging.
"""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Callable

import numpy as np
import zmq

from pipeline.config.models import PublisherConfig
from pipeline.core.messages import Detections, Frame, Job, Outcome, Reason, ReasonCode, Verdict
from pipeline.parts.publishing import ZmqPublisher
from pipeline.parts.publishing.zmq_publisher import PublisherError
from tests.waiting import wait_until

CLASS_NAMES = ("scratch", "spot", "crack")
RECV_TIMEOUT_MS = 2000


@contextmanager
def endpoint_in_use(endpoint: str, kind: int = zmq.PUB) -> Iterator[None]:
    """`endpoint` bound by another socket (of `kind`) while inside: binding it again fails."""
    context = zmq.Context()
    sock = context.socket(kind)
    sock.setsockopt(zmq.LINGER, 0)
    sock.bind(endpoint)
    try:
        yield
    finally:
        sock.close()
        context.term()


def make_job(
    camera_id: str = "cam0",
    frame_id: int = 0,
    outcome: Outcome = Outcome.PASS,
    reasons: tuple[Reason, ...] = (),
    detections: Detections | None = None,
    late: bool = False,
    part_id: str | None = None,
    **extra: Any,
) -> Job:
    """A settled job captured 12 ms ago that went through four stages."""
    now = time.monotonic_ns()
    frame = Frame(camera_id, frame_id, None, now - 12_000_000, time.time_ns() - 12_000_000, part_id=part_id)
    marks = (("capture", now - 11_500_000), ("preprocess", now - 9_000_000), ("infer", now - 3_000_000),
             ("decide", now - 2_000_000))
    verdict = Verdict(outcome, reasons, late=late)
    return Job(frame, marks, detections=detections, verdict=verdict, model_backend="onnxruntime", extra=extra)


def defect_job(camera_id: str = "cam0", frame_id: int = 0, score: float = 0.91) -> Job:
    dets = Detections(
        np.array([[10.24, 20.0, 50.5, 60.0], [100, 100, 110, 120]], np.float32),
        np.array([score, 0.3], np.float32),
        np.array([0, 1], np.int64),
    )
    reason = Reason(ReasonCode.DEFECT, "scratch >= 0.5", "scratch", score, (10.24, 20.0, 50.5, 60.0), 1606.5, 0.401625, "scratch")
    return make_job(camera_id, frame_id, Outcome.FAIL, (reason,), dets)


def publisher(context: zmq.Context, endpoint: str = "tcp://127.0.0.1:*", nodrop: bool = False, **cfg: Any) -> ZmqPublisher:
    config = PublisherConfig(endpoint=endpoint, linger_ms=0, **cfg)
    return ZmqPublisher.from_config(config, context, 30.0, CLASS_NAMES, nodrop=nodrop)


def rebound_publisher(context: zmq.Context, endpoint: str, timeout_s: float = 5.0) -> ZmqPublisher:
    """A new publisher on the endpoint a closed one held: libzmq releases the port on its
    I/O thread after close() returns, so a bind right away can still find it taken."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return publisher(context, endpoint)
        except PublisherError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)  # a retry with a deadline that re-raises the last error


def sub_socket(context: zmq.Context, endpoint: str, topic: bytes = b"", **options: int) -> zmq.Socket:
    sock = context.socket(zmq.SUB)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVTIMEO, RECV_TIMEOUT_MS)
    for name, value in options.items():
        sock.setsockopt(getattr(zmq, name), value)
    sock.connect(endpoint)
    sock.setsockopt(zmq.SUBSCRIBE, topic)
    return sock


def wait_joined(pub: ZmqPublisher, joined: Callable[[], bool], timeout_s: float = 5.0) -> None:
    """PUB/SUB slow joiner: send heartbeats until `joined()` says one arrived."""
    # PUB drops what it sends before the join: a heartbeat each poll until one arrives
    assert wait_until(joined, timeout_s, each=lambda: pub.publish_heartbeat({"health": "STARTING"})), \
        "subscriber never received a heartbeat"


def join_sub(pub: ZmqPublisher, sub: zmq.Socket) -> None:
    """Wait until `sub` receives, then drain the heartbeats sent meanwhile.

    Subscribes to the heartbeat topic for the wait (subscriptions are counted, so the
    unsubscribe afterwards leaves any subscription of the test's own in place).
    """
    topic = pub._heartbeat_topic
    sub.setsockopt(zmq.SUBSCRIBE, topic)
    wait_joined(pub, lambda: bool(sub.poll(20)))
    while sub.poll(50):
        sub.recv_multipart()
    sub.setsockopt(zmq.UNSUBSCRIBE, topic)


class SubscriberRun:
    """`subscribe_main` on a background thread, its stdout/stderr captured."""

    def __init__(self, endpoint: str, **kwargs: Any):
        from pipeline.service.subscriber import subscribe_main

        self.out, self.err = io.StringIO(), io.StringIO()
        self.code: int | None = None

        def run() -> None:
            self.code = subscribe_main(endpoint, out=self.out, err=self.err, **kwargs)

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def saw(self, text: str) -> bool:
        return text in self.out.getvalue()

    def wait_for(self, text: str, timeout_s: float = 5.0) -> None:
        assert wait_until(lambda: text in self.out.getvalue() + self.err.getvalue(), timeout_s), \
            f"{text!r} never printed; got:\n{self.out.getvalue()}"

    def finish(self, timeout_s: float = 5.0) -> int:
        self.thread.join(timeout_s)
        assert not self.thread.is_alive(), "subscriber did not exit"
        assert self.code is not None
        return self.code

    def lines(self) -> list[str]:
        return self.out.getvalue().splitlines()
