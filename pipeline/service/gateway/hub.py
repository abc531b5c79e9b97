"""The gateway's core: pipelines in, per-camera snapshots out to every output.

Owns one subscriber thread per pipeline (a SUB socket, CURVE when configured; messages
parsed by `pipeline.core.protocol.decode`, gaps and restarts found by the reference
subscriber's `SeqTracker`: a restart by the publisher's `instance` id, or by a `seq` that
went back), the camera channels, and the fan-out to the sinks. Every
change of a camera (a new result, ready <-> not ready) goes to each sink's `update`,
in order, under one lock; sinks only queue it there, so a slow PLC never stalls intake.
`tick()` (the service's main loop) notices silence: the heartbeat timeout.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any, Protocol

import zmq

from pipeline.core.protocol import ProtocolError, decode
from pipeline.parts.publishing.curve import make_curve_client
from pipeline.service.gateway.gateway_config import GatewayConfig, PipelineSource
from pipeline.service.gateway.gateway_metrics import GatewayMetrics
from pipeline.service.gateway.state import CameraChannel, CameraSnapshot, NotReadyReason
from pipeline.service.subscriber import SeqTracker

log = logging.getLogger(__name__)
_POLL_MS = 100


class Sink(Protocol):
    """An output: Modbus client, Modbus server, OPC UA server."""

    name: str

    def start(self) -> None: ...
    def update(self, snap: CameraSnapshot) -> None: ...  # must not block: queue and return
    def problem(self) -> str: ...  # "" while the output works
    def close(self) -> None: ...


class Hub:
    def __init__(self, config: GatewayConfig, sinks: list[Sink], metrics: GatewayMetrics):
        self.config, self.sinks, self.metrics = config, sinks, metrics
        self.channels = {cid: CameraChannel(cid, i, config.fail_safe) for i, cid in enumerate(config.cameras)}
        self.owner: dict[str, int] = {}  # camera -> index of the pipeline whose heartbeat lists it
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._context = zmq.Context()
        self._sockets = [self._connect(p) for p in config.pipelines]
        self._threads = [threading.Thread(target=self._receive, args=(i, s), name=f"gateway-sub-{i}", daemon=True)
                         for i, s in enumerate(self._sockets)]
        for cid, ch in self.channels.items():
            self._publish(ch.snapshot)
            metrics.not_ready_reason.labels(cid).set(int(ch.snapshot.not_ready_reason))

    def _connect(self, source: PipelineSource) -> zmq.Socket:
        sock = self._context.socket(zmq.SUB)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.RCVTIMEO, _POLL_MS)
        sock.setsockopt(zmq.RCVHWM, 100_000)  # a burst must queue, not drop: every verdict counts
        # retry every 10 ms (ZeroMQ's default: 100 ms): a (re)started pipeline's first
        # verdicts go out as soon as its first subscriber is there, and that should be us
        sock.setsockopt(zmq.RECONNECT_IVL, 10)
        if source.curve is not None:
            make_curve_client(sock, Path(source.curve.server_key), Path(source.curve.client_keys))
        sock.connect(source.endpoint)
        sock.setsockopt(zmq.SUBSCRIBE, f"{source.topic_prefix}.".encode())
        return sock

    def start(self) -> None:
        for t in self._threads:
            t.start()

    def alive(self) -> bool:
        return all(t.is_alive() for t in self._threads)

    def _receive(self, index: int, sock: zmq.Socket) -> None:
        seqs = SeqTracker()
        while not self._stop.is_set():
            try:
                frames = sock.recv_multipart()
            except zmq.Again:
                continue
            except zmq.ZMQError:
                return  # the socket was closed by close()
            if len(frames) != 2:
                self.metrics.malformed.inc()
                continue
            try:
                msg = decode(frames[1])
            except ProtocolError as err:
                self.metrics.malformed.inc()
                log.warning("malformed message from pipeline %d: %s", index, err)
                continue
            with self._lock:
                self._handle(index, msg, seqs)

    def _handle(self, index: int, msg: dict[str, Any], seqs: SeqTracker) -> None:
        now = time.monotonic_ns()
        self._restarted(index, seqs.on_instance(msg.get("instance")), seqs, now)
        if msg.get("type") == "verdict":
            self._verdict(msg, seqs, now)
        elif msg.get("type") == "heartbeat":
            self._heartbeat(index, msg, seqs, now)

    def _verdict(self, msg: dict[str, Any], seqs: SeqTracker, now: int) -> None:
        cid, seq = msg.get("camera_id"), msg.get("seq")
        channel = self.channels.get(cid) if isinstance(cid, str) else None
        if channel is None or not isinstance(seq, int) or isinstance(seq, bool):
            return  # a camera this gateway does not map
        self.metrics.received.labels(cid).inc()
        before = seqs.lost
        self._discontinuity(channel, seqs.on_verdict(cid, seq), seqs.lost - before, now)
        channel.on_verdict(msg)
        channel.evaluate(now)
        self._publish(channel.snapshot)

    def _heartbeat(self, index: int, msg: dict[str, Any], seqs: SeqTracker, now: int) -> None:
        cameras = msg.get("cameras") if isinstance(msg.get("cameras"), dict) else {}
        for cid, channel in self.channels.items():
            info = cameras.get(cid)
            if not isinstance(info, dict):
                if self.owner.get(cid) == index:
                    channel.on_heartbeat(msg.get("health"), False, now)
                    self._changed(channel, now)
                continue
            self.owner[cid] = index
            if isinstance(info.get("last_seq"), int):
                before = seqs.lost
                line = seqs.on_heartbeat_last_seq(cid, info["last_seq"])
                self._discontinuity(channel, line, seqs.lost - before, now)
            channel.on_heartbeat(msg.get("health"), True, now)
            self._changed(channel, now)

    def _restarted(self, index: int, line: str | None, seqs: SeqTracker, now: int) -> None:
        """The pipeline's instance id changed (a restart, also one the seq rule cannot see: we
        were disconnected across it and its new seq had passed the old one): a RESTART on every
        camera we had from it. `seqs` now expects seq 0 of each, so the new instance's verdicts
        we never got follow as a GAP with their count."""
        if line is None:
            return
        cameras = seqs.expected.keys() | {cid for cid, owner in self.owner.items() if owner == index}
        for cid in sorted(cameras):
            channel = self.channels.get(cid)
            if channel is not None:
                self._discontinuity(channel, line, 0, now)

    def _discontinuity(self, channel: CameraChannel, line: str | None, lost: int, now: int) -> None:
        if line is None:
            return
        restart = line.startswith("RESTART")
        log.warning("%s; %s not ready for %d ms", line, channel.camera_id, self.config.fail_safe.hold_after_gap_ms)
        self.metrics.gaps.labels(channel.camera_id, "restart" if restart else "gap").inc()
        if not restart:
            self.metrics.lost.labels(channel.camera_id).inc(lost)
        channel.on_discontinuity(NotReadyReason.RESTART if restart else NotReadyReason.GAP, now)

    def _changed(self, channel: CameraChannel, now: int) -> None:
        old = channel.snapshot
        if channel.evaluate(now) or channel.snapshot != old:
            self._publish(channel.snapshot)

    def _publish(self, snap: CameraSnapshot) -> None:
        self.metrics.ready.labels(snap.camera_id).set(int(snap.ready))
        self.metrics.not_ready_reason.labels(snap.camera_id).set(int(snap.not_ready_reason))
        for sink in self.sinks:
            sink.update(snap)

    def tick(self) -> None:
        """Called every ~50 ms: silence becomes "not ready", an expired hold recovers."""
        now = time.monotonic_ns()
        with self._lock:
            for channel in self.channels.values():
                self._changed(channel, now)

    def not_ready(self) -> dict[str, str]:
        with self._lock:
            return {cid: ("" if ch.snapshot.ready else ch.snapshot.not_ready_reason.name)
                    for cid, ch in self.channels.items()}

    def close(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(2)
        for s in self._sockets:
            s.close()
        self._context.term()

