"""Publishes verdicts and heartbeats on a ZeroMQ PUB socket.

Owns the PUB socket (from `from_config`, or the one handed to `__init__`) and the
per-camera sequence counters. What crosses the boundary: settled `Job`s and heartbeat
status dicts come in from the publish stage; two-frame messages `[topic, payload]` go out
(format: `pipeline.core.protocol`, contract: docs/PROTOCOL.md).

Never blocks the pipeline: every send is `zmq.NOBLOCK`. What happens at the send high
water mark (SNDHWM) depends on the socket:
- plain PUB (the default of `from_config`): libzmq drops silently *per subscriber*, so a
  stalled subscriber loses messages while the others still get every one. The publisher
  cannot see this; the subscriber sees it as a `seq` gap.
- PUB with ZMQ_XPUB_NODROP (config `publisher.nodrop: true`): libzmq refuses the message
  (zmq.Again) when *any* subscriber is full; we count it in `dropped`. One stuck
  subscriber then costs every subscriber that message, so it is opt-in.
Either way the seq number is consumed, so loss is always visible as a gap.

Hardened against what peers send (docs/PROTOCOL.md "Limits of the PUB port"): inbound
messages larger than `publisher.max_inbound_bytes` drop the connection before anything is
allocated (ZMQ_MAXMSGSIZE, also before CURVE authentication); subscriptions go through a
`SubscriptionGate` (manual XPUB), which keeps only those that can match our topics and at
most `publisher.max_subscriptions` distinct ones. Every verdict and heartbeat carries
`instance`, random per start, so a gateway sees a restart it was disconnected across.

Not thread-safe (neither is a zmq socket): exactly one thread, the publish stage, owns
a `ZmqPublisher` from construction to `close()`.
"""

from __future__ import annotations

import dataclasses
import secrets
import time
from types import MappingProxyType
from typing import Any, Mapping, Sequence

import zmq

from pipeline.config.models import PublisherConfig
from pipeline.core.errors import PipelineError
from pipeline.core.messages import Job, Outcome, Reason, ReasonCode, Verdict
from pipeline.core.protocol import (
    ProtocolError,
    encode_heartbeat,
    encode_verdict,
    heartbeat_topic,
    verdict_topic,
)
from pipeline.parts.publishing.curve import (
    CurveKeyError,
    load_allowed_clients,
    load_server_keys,
    make_curve_server,
    start_authenticator,
)
from pipeline.parts.publishing.peer_guard import PeerGuard
from pipeline.parts.publishing.subscriptions import SubscriptionGate

# What one peer can have in flight towards us beyond what the PeerGuard metered (docs/PROTOCOL.md
# "Limits of the PUB port"): a gateway sends a few hundred bytes in its life, so both are small.
INBOUND_HWM = 16  # messages in libzmq's pipe from one peer
INBOUND_KERNEL_BYTES = 4096  # SO_RCVBUF (Linux doubles it: 8 kB); no autotuning to tcp_rmem's max
# A peer that connects and never completes the ZMTP handshake holds one of max_gateways'
# places this long (libzmq's default: 30 s, a lock-out of new gateways by idle connections).
HANDSHAKE_TIMEOUT_MS = 3000

# Plain ints: pyzmq's flag enums cost a Python-level operator call per use, per verdict.
_POLLIN = int(zmq.POLLIN)
_NOBLOCK, _NOBLOCK_MORE = int(zmq.NOBLOCK), int(zmq.NOBLOCK | zmq.SNDMORE)


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
        gate: SubscriptionGate | None = None,
        guard: PeerGuard | None = None,
    ):
        self._socket = socket
        self._poll_items = [(socket, _POLLIN)]  # built once: _notices_waiting runs per verdict
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
        # None: libzmq applies subscriptions itself (a plain XPUB or PUB handed to __init__).
        self.gate = gate
        self.guard = guard  # None: peers are not metered (a socket handed to __init__)
        self.instance_id = new_instance_id()

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
        _limit_inbound(socket, cfg)
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
        gate = SubscriptionGate(cfg.topic_prefix, cfg.max_subscriptions)
        guard = PeerGuard(socket, cfg.max_gateways, cfg.peer_burst_bytes, cfg.peer_rate_bytes_s)
        return cls(socket, cfg.topic_prefix, budget_ms, class_names, cfg.include_detections, authenticator, gate, guard)

    @property
    def endpoint(self) -> str:
        """The bound endpoint as zmq resolved it (a `tcp://host:*` wildcard becomes a port)."""
        return self._socket.getsockopt_string(zmq.LAST_ENDPOINT)

    @property
    def last_seq(self) -> Mapping[str, int]:
        """camera_id -> the last verdict seq used (read-only view; absent: none yet)."""
        return MappingProxyType(self._last_seq)

    def publish_verdict(self, job: Job, t_mono_ns: int | None = None) -> int:
        """Send the verdict of a settled job; return the seq it used. Never blocks.
        `t_mono_ns`: the monotonic publish time the caller judged `late` by (default now),
        so the message's `latency_ms.total` is the age that decision saw."""
        camera_id = job.frame.camera_id
        topic = self._topics.get(camera_id)
        if topic is None:
            topic = self._topics[camera_id] = verdict_topic(self._prefix, camera_id)
        seq = self._last_seq.get(camera_id, -1) + 1
        if self.gate is not None and self._notices_waiting():
            self._drain_subscriptions()  # a (re)connecting gateway's subscription takes effect now
        payload = self._encode(job, seq, t_mono_ns)
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
        status = {**self._with_last_seq(status), "instance": self.instance_id}
        if self.gate is not None:
            status["subscriptions"] = {"topics": self.gate.topics, "ignored": self.gate.ignored,
                                       "over_limit": self.gate.over_limit}
        if self.guard is not None:
            status["peers"] = {"connected": self.guard.peers, "refused": self.guard.refused,
                               "dropped": self.guard.dropped}
        payload = encode_heartbeat(status, seq, time.time_ns())
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

    def _notices_waiting(self) -> bool:
        # zmq_poll, not getsockopt(EVENTS): both let libzmq read what peers sent, which can take
        # long under a flood, and pyzmq holds the GIL through getsockopt, which would starve the
        # PeerGuard thread that is to cut the flooder off.
        return bool(zmq.zmq_poll(self._poll_items, 0))

    def _drain_subscriptions(self) -> None:
        # XPUB queues (un)subscription notices for us; read them so they never pile up.
        if self.gate is not None:
            self.gate.drain(self._socket)
            return
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
            if self.guard is not None:
                self.guard.close()
            self._socket.close()
            if self._authenticator is not None:
                self._authenticator.stop()

    # ------------------------------------------------------------------ internals

    def _encode(self, job: Job, seq: int, t_mono_ns: int | None = None) -> bytes:
        t_wall, t_mono = time.time_ns(), t_mono_ns or time.monotonic_ns()
        args = (seq, t_wall, t_mono, self._budget_ms, self._class_names)
        try:
            return encode_verdict(job, *args, include_detections=self._include_detections,
                                  instance=self.instance_id)
        except ProtocolError:
            if job.verdict is None:
                raise  # publishing an undecided job is a bug upstream, not a data problem
            # Bad data (e.g. a NaN score) must not cost the part its verdict: send ERROR.
            return encode_verdict(_as_error(job), *args, include_detections=False, instance=self.instance_id)

    def _send(self, topic: bytes, payload: bytes) -> bool:
        try:
            # the two frames of one message: libzmq queues a multipart message whole or refuses
            # its first frame, so the payload's send cannot fail once the topic's went
            self._socket.send(topic, _NOBLOCK_MORE)
            self._socket.send(payload, _NOBLOCK)
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


def new_instance_id() -> str:
    """16 hex digits, random per start: equal ids mean the same publisher process."""
    return secrets.token_hex(8)


def _limit_inbound(socket: zmq.Socket, cfg: PublisherConfig) -> None:
    """Bound what one peer can make us hold: message size, queued notices, manual subscriptions."""
    socket.setsockopt(zmq.MAXMSGSIZE, cfg.max_inbound_bytes)  # checked from the frame header
    socket.setsockopt(zmq.RCVHWM, INBOUND_HWM)  # notices queued per peer before TCP pushes back
    socket.setsockopt(zmq.RCVBUF, INBOUND_KERNEL_BYTES)  # and what the kernel holds unread for it
    socket.setsockopt(zmq.HANDSHAKE_IVL, HANDSHAKE_TIMEOUT_MS)
    socket.setsockopt(zmq.XPUB_MANUAL, 1)  # the SubscriptionGate decides what is kept


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
