"""OPC UA server output: a node per camera that a PLC or SCADA client reads.

Owns one asyncua server on its own thread and event loop. Node tree (namespace
`opcua.namespace`; docs/GATEWAY.md): Objects/Inspection/<camera>/ with typed variables
(Ready Boolean, Sequence UInt32, Verdict String, PartId String, Reasons String[],
CaptureTime DateTime, ...) and the handshake: ResultCounter (UInt16, written last, so a
client that sees it move finds the result's other nodes already in place) and
AckSequence (UInt32, the only node a client may write). AckSequence is read every
`ack_poll_ms`; AckState tells whether the newest result was acknowledged in time.
Security policy None unless `opcua.security` names a certificate and key.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from typing import Any

from asyncua import Server, ua

from pipeline.composition.app import StartupError
from pipeline.service.gateway.gateway_config import HandshakeConfig, OpcUaConfig
from pipeline.service.gateway.gateway_metrics import GatewayMetrics
from pipeline.service.gateway.handshake import AckState, AckTracker
from pipeline.service.gateway.loop_thread import LoopThread
from pipeline.service.gateway.state import CameraSnapshot

log = logging.getLogger(__name__)
logging.getLogger("asyncua").setLevel(logging.WARNING)

V = ua.VariantType
# Node name -> (variant type, value from a snapshot). ResultCounter is written after these.
FIELDS: dict[str, tuple[ua.VariantType, Any]] = {
    "Ready": (V.Boolean, lambda s: s.ready),
    "NotReadyReason": (V.String, lambda s: s.not_ready_reason.name),
    "NotReadyReasonCode": (V.Int16, lambda s: int(s.not_ready_reason)),
    "Health": (V.String, lambda s: s.health.name),
    "Sequence": (V.UInt32, lambda s: s.seq & 0xFFFFFFFF),
    "Verdict": (V.String, lambda s: s.verdict.name),
    "VerdictCode": (V.Int16, lambda s: int(s.verdict)),
    "ReasonCode": (V.Int16, lambda s: s.reason),
    "Reasons": (V.String, lambda s: list(s.reasons)),
    "PartId": (V.String, lambda s: s.part_id),
    "CaptureTime": (V.DateTime, lambda s: _time(s.t_capture_ns)),
    "PublishTime": (V.DateTime, lambda s: _time(s.t_publish_ns)),
    "Gaps": (V.UInt32, lambda s: s.gaps),
}


def _time(t_ns: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(t_ns / 1e9, dt.timezone.utc) if t_ns else dt.datetime(1970, 1, 1,
                                                                                       tzinfo=dt.timezone.utc)


class OpcUaSink:
    name = "opcua"

    def __init__(self, config: OpcUaConfig, handshake: HandshakeConfig, cameras: tuple[str, ...],
                 metrics: GatewayMetrics):
        self.config, self.metrics, self.cameras = config, metrics, cameras
        self.ack_poll_s = handshake.ack_poll_ms / 1000
        self.trackers = {cid: AckTracker(handshake.ack_timeout_ms) for cid in cameras}
        self.nodes: dict[str, dict[str, ua.NodeId]] = {}
        self._counters: dict[str, int] = {}
        self._ack_written: dict[str, AckState] = {}
        self._counted: dict[str, tuple[int, int]] = {}
        self._pending: list[CameraSnapshot] = []  # updates before the loop runs
        self._loop = LoopThread("gateway-opcua")
        self._queue: asyncio.Queue[CameraSnapshot] | None = None
        self._server: Server | None = None
        self._started = False
        self._tasks: list[asyncio.Future] = []
        metrics.connected.labels(self.name).set(0)

    def start(self) -> None:
        self._loop.start()
        try:
            self._loop.run(self._start(), 30)
        except OSError as exc:
            raise StartupError(f"opcua: cannot listen on {self.config.endpoint}: {exc.strerror or exc}; "
                               "set opcua.endpoint to a free port") from None
        self._started = True
        self.metrics.connected.labels(self.name).set(1)
        log.info("opcua: serving %s", self.config.endpoint)

    async def _start(self) -> None:
        self._queue = asyncio.Queue()
        server = Server()
        await server.init()
        server.set_endpoint(self.config.endpoint)
        server.set_server_name("Inspection gateway")
        await self._security(server)
        ns = await server.register_namespace(self.config.namespace)
        root = await server.nodes.objects.add_object(ua.NodeId("Inspection", ns), ua.QualifiedName("Inspection", ns))
        for cid in self.cameras:
            self.nodes[cid] = await _camera_nodes(root, ns, cid)
        await server.start()
        self._server = server
        for snap in self._pending:
            self._queue.put_nowait(snap)
        self._tasks = [asyncio.ensure_future(self._write_loop()), asyncio.ensure_future(self._ack_loop())]

    async def _security(self, server: Server) -> None:
        sec = self.config.security
        if sec is None:
            server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
            return
        # the configured policy names an enum member (the config's Literal lists the names)
        server.set_security_policy([getattr(ua.SecurityPolicyType, sec.policy)])
        try:
            await server.load_certificate(str(sec.certificate))
            await server.load_private_key(str(sec.private_key))
        except (OSError, ValueError) as exc:
            raise StartupError(f"opcua.security: cannot load {sec.certificate} / {sec.private_key}: {exc}") from None

    def update(self, snap: CameraSnapshot) -> None:
        if self._queue is None:
            self._pending.append(snap)
        else:
            self._loop.call_soon(self._queue.put_nowait, snap)

    def problem(self) -> str:
        return "" if self._started else "the OPC UA server is not running"

    async def _write_loop(self) -> None:
        assert self._queue is not None
        while True:
            snap = await self._queue.get()
            try:
                await self._write(snap)
            except Exception as exc:  # noqa: BLE001 - one bad write must not end the output
                self.metrics.write_failures.labels(self.name).inc()
                log.warning("opcua: cannot update %s: %s", snap.camera_id, exc)

    async def _write(self, snap: CameraSnapshot) -> None:
        nodes = self.nodes[snap.camera_id]
        for name, (variant, value) in FIELDS.items():
            await self._set(nodes[name], value(snap), variant)
        new = snap.is_new_result(self._counters.get(snap.camera_id))
        if new:
            self.trackers[snap.camera_id].written(snap.seq & 0xFFFFFFFF, time.monotonic_ns())
            await self._ack_state(snap.camera_id)
        await self._set(nodes["ResultCounter"], snap.result_counter, V.UInt16)
        if new:
            self._counters[snap.camera_id] = snap.result_counter
            self.metrics.observe_write(self.name, snap.camera_id, snap.t_publish_ns, time.time_ns())

    async def _set(self, node: ua.NodeId, value: Any, variant: ua.VariantType) -> None:
        assert self._server is not None
        await self._server.write_attribute_value(node, ua.DataValue(ua.Variant(value, variant)))

    async def _ack_loop(self) -> None:
        while True:
            await asyncio.sleep(self.ack_poll_s)
            for cid in self.cameras:
                try:
                    await self._ack_state(cid)
                except Exception as exc:  # noqa: BLE001
                    log.warning("opcua: cannot judge the acknowledge of %s: %s", cid, exc)

    async def _ack_state(self, cid: str) -> None:
        assert self._server is not None
        value = self._server.read_attribute_value(self.nodes[cid]["AckSequence"]).Value.Value  # a local read: not a coroutine
        tracker = self.trackers[cid]
        state = tracker.acknowledged(int(value or 0), time.monotonic_ns()) if value is not None else tracker.poll(
            time.monotonic_ns())
        acks, late = self._counted.get(cid, (0, 0))
        self.metrics.acks.labels(cid, self.name).inc(tracker.acks - acks)
        self.metrics.acks_late.labels(cid, self.name).inc(tracker.late - late)
        self._counted[cid] = (tracker.acks, tracker.late)
        if state is not self._ack_written.get(cid):
            self._ack_written[cid] = state
            await self._set(self.nodes[cid]["AckState"], state.name, V.String)
            if state is AckState.LATE:
                log.warning("%s: the OPC UA client did not acknowledge in time", cid)

    def close(self) -> None:
        if self._server is not None:
            self._loop.run(self._stop(), 10)
        self._loop.stop()

    async def _stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        assert self._server is not None
        await self._server.stop()


async def _camera_nodes(root, ns: int, cid: str) -> dict[str, ua.NodeId]:
    obj = await root.add_object(ua.NodeId(f"Inspection.{cid}", ns), ua.QualifiedName(cid, ns))
    nodes = {}
    initial = CameraSnapshot(cid, 0)
    specs = {**FIELDS, "ResultCounter": (V.UInt16, lambda s: 0), "AckState": (V.String, lambda s: "NONE"),
             "AckSequence": (V.UInt32, lambda s: 0xFFFFFFFF)}
    for name, (variant, value) in specs.items():
        var = await obj.add_variable(ua.NodeId(f"Inspection.{cid}.{name}", ns), ua.QualifiedName(name, ns),
                                     ua.Variant(value(initial), variant))
        if name == "AckSequence":
            await var.set_writable()
        nodes[name] = var.nodeid
    return nodes
