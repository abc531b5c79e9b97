"""Publishes verdicts and heartbeats on a ZeroMQ PUB socket.

Owns the PUB socket (from `from_config`, or the one handed to `__init__`) and the
per-camera sequence counters. What crosses the boundary: settled `Job`s and heartbeat
status dicts come in from the publish stage; two-frame messages `[topic, payload]` go out
(format: `pipeline.protocol`, contract: docs/PROTOCOL.md).

Never blocks the pipeline: every send is `zmq.NOBLOCK`. What happens at the send high
water mark (SNDHWM) depends on the socket:
- plain PUB (the default of `from_config`): libzmq drops silently *per subscriber*, so a
  stalled subscriber loses messages while the others still get every one. The publisher
  cannot see this; the subscriber sees it as a `seq` gap.
- PUB with ZMQ_XPUB_NODROP (config `publisher.nodrop: true`): libzmq refuses the message
  (zmq.Again) when *any* subscriber is full; we count it in `dropped`. One stuck
  subscriber then costs every subscriber that message, so it is opt-in.
Either way the seq number is consumed, so loss is always visible as a gap.

Not thread-safe (neither is a zmq socket): exactly one thread, the publish stage, owns
a `ZmqPublisher` from construction to `close()`.
"""

from __future__ import annotations

import dataclasses
import time
from types import MappingProxyType
from typing import Any, Mapping, Sequence

import zmq

from pipeline.config.models import PublisherConfig
from pipeline.errors import PipelineError
from pipeline.messages import Job, Outcome, Reason, ReasonCode, Verdict
from pipeline.protocol import (
    ProtocolError,
    encode_heartbeat,
    encode_verdict,
    heartbeat_topic,
    verdict_topic,
)
from pipeline.publishing.curve import (
    CurveKeyError,
    load_allowed_clients,
    load_server_keys,
    make_curve_server,
    start_authenticator,
)


class PublisherError(PipelineError, RuntimeError):
    """The publisher cannot start (e.g. its endpoint cannot be bound)."""


class ZmqPublisher:
    """Sends one message per verdict with contiguous per-camera `seq`, plus heartbeats."""

    def __init__(
        self,
        socket: zmq.Socket,
        topic_prefix: str,
        budget_ms: float,
        class_names: Sequence[str],
        include_detections: bool = True,
        authenticator: Any = None,
    ):
        self._socket = socket
        self._authenticator = authenticator  # CURVE's ZAP handler, stopped after the socket closes
        self._prefix = topic_prefix
        self._budget_ms = budget_ms
        self._class_names = tuple(class_names)
        self._include_detections = include_detections
        self._heartbeat_topic = heartbeat_topic(topic_prefix)  # validates the prefix early
        self._topics: dict[str, bytes] = {}
        self._last_seq: dict[str, int] = {}
        self._heartbeat_seq = 0
        self.dropped = 0  # verdict messages zmq refused at the HWM (NODROP sockets only)
        self._closed = False

    @classmethod
    def from_config(
        cls,
        cfg: PublisherConfig,
        context: zmq.Context,
        budget_ms: float,
        class_names: Sequence[str],
        nodrop: bool | None = None,
    ) -> "ZmqPublisher":
        """Create the socket on `context`, bind it to `cfg.endpoint`; PublisherError if that fails.

        The socket is an XPUB: to subscribers it is exactly a PUB, and it also tells us
        when a subscription arrives, so start-up can wait for the first gateway
        (`wait_for_subscriber`) instead of losing the first verdicts to the slow joiner.
        `nodrop` overrides `cfg.nodrop`. With `cfg.curve` the socket is a CURVE server and
        a ZAP authenticator on `context` admits only the configured client keys.
        """
        socket = context.socket(zmq.XPUB)
        socket.setsockopt(zmq.LINGER, cfg.linger_ms)  # bounds close(): queued messages wait at most this
        socket.setsockopt(zmq.SNDHWM, cfg.sndhwm)
        socket.setsockopt(zmq.IMMEDIATE, 0)
        if cfg.nodrop if nodrop is None else nodrop:
            socket.setsockopt(zmq.XPUB_NODROP, 1)
        authenticator = None
        try:
            authenticator = _secure(socket, cfg, context) if cfg.curve is not None else None
            socket.bind(cfg.endpoint)
        except (zmq.ZMQError, CurveKeyError) as err:
            socket.close(linger=0)
            if authenticator is not None:
                authenticator.stop()
            if isinstance(err, CurveKeyError):
                raise PublisherError(f"publisher.curve: {err}") from None
            raise PublisherError(f"cannot bind publisher to {cfg.endpoint!r}: {err.strerror}") from err
        return cls(socket, cfg.topic_prefix, budget_ms, class_names, cfg.include_detections, authenticator)

    @property
    def endpoint(self) -> str:
        """The bound endpoint as zmq resolved it (a `tcp://host:*` wildcard becomes a port)."""
        return self._socket.getsockopt_string(zmq.LAST_ENDPOINT)

    @property
    def last_seq(self) -> Mapping[str, int]:
        """camera_id -> the last verdict seq used (read-only view; absent: none yet)."""
        return MappingProxyType(self._last_seq)

    def publish_verdict(self, job: Job) -> int:
        """Send the verdict of a settled job; return the seq it used. Never blocks."""
        camera_id = job.frame.camera_id
        topic = self._topics.get(camera_id)
        if topic is None:
            topic = self._topics[camera_id] = verdict_topic(self._prefix, camera_id)
        seq = self._last_seq.get(camera_id, -1) + 1
        payload = self._encode(job, seq)
        self._last_seq[camera_id] = seq  # consumed even if zmq drops it: loss shows as a gap
        if not self._send(topic, payload):
            self.dropped += 1
        return seq

    def publish_heartbeat(self, status: dict[str, Any]) -> int:
        """Send a heartbeat built from `status`; return its seq. Never blocks.

        `cameras[*].last_seq` is filled from our own counters: the publisher is the only
        authority on what was sent, and a subscriber uses it to notice a trailing gap.
        """
        seq = self._heartbeat_seq
        self._heartbeat_seq += 1
        self._drain_subscriptions()
        payload = encode_heartbeat(self._with_last_seq(status), seq, time.time_ns())
        self._send(self._heartbeat_topic, payload)  # a dropped heartbeat: the next one says the same
        return seq

    def wait_for_subscriber(self, timeout_s: float) -> bool:
        """Wait up to `timeout_s` for a first subscription; True if one arrived."""
        if timeout_s <= 0:
            return False
        if not self._socket.poll(int(timeout_s * 1000), zmq.POLLIN):
            return False
        self._drain_subscriptions()
        return True

    def _drain_subscriptions(self) -> None:
        # XPUB queues (un)subscription notices for us; read them so they never pile up.
        while True:
            try:
                self._socket.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            except zmq.ZMQError:  # a plain PUB handed to __init__ cannot receive
                return

    def close(self) -> None:
        """Close the socket; pending messages get at most the socket's LINGER to go out."""
        if not self._closed:
            self._closed = True
            self._socket.close()
            if self._authenticator is not None:
                self._authenticator.stop()

    # ------------------------------------------------------------------ internals

    def _encode(self, job: Job, seq: int) -> bytes:
        t_wall, t_mono = time.time_ns(), time.monotonic_ns()
        args = (seq, t_wall, t_mono, self._budget_ms, self._class_names)
        try:
            return encode_verdict(job, *args, include_detections=self._include_detections)
        except ProtocolError:
            if job.verdict is None:
                raise  # publishing an undecided job is a bug upstream, not a data problem
            # Bad data (e.g. a NaN score) must not cost the part its verdict: send ERROR.
            return encode_verdict(_as_error(job), *args, include_detections=False)

    def _send(self, topic: bytes, payload: bytes) -> bool:
        try:
            self._socket.send_multipart((topic, payload), flags=zmq.NOBLOCK, copy=False)
        except zmq.Again:
            return False
        return True

    def _with_last_seq(self, status: dict[str, Any]) -> dict[str, Any]:
        cameras = {cid: dict(info) for cid, info in (status.get("cameras") or {}).items()}
        for cid in self._last_seq.keys() - cameras.keys():
            cameras[cid] = {}
        for cid, info in cameras.items():
            info["last_seq"] = self._last_seq.get(cid, -1)
        return {**status, "cameras": cameras}


def _secure(socket: zmq.Socket, cfg: PublisherConfig, context: zmq.Context):
    """Load the keys (CurveKeyError names the file at fault) and make `socket` a CURVE server."""
    assert cfg.curve is not None
    keys = load_server_keys(cfg.curve)
    allowed = load_allowed_clients(cfg.curve.allowed_clients)
    authenticator = start_authenticator(context, allowed)
    make_curve_server(socket, keys)
    return authenticator


def _as_error(job: Job) -> Job:
    """The same part as an ERROR verdict without the unencodable data."""
    assert job.verdict is not None
    reason = Reason(ReasonCode.BAD_OUTPUT, "verdict could not be encoded (non-finite value)")
    verdict = Verdict(Outcome.ERROR, (reason,), late=job.verdict.late)
    return dataclasses.replace(job, verdict=verdict, detections=None)
