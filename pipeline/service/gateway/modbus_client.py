"""Modbus/TCP client output: the gateway writes each camera's block into the PLC.

Owns one pymodbus TCP client on its own thread. Each change of a camera is one
"write multiple registers" (function 16) of the gateway-owned range of that camera's
block, so the PLC never sees half a result. Between writes the acknowledge registers
are read (function 3) every `ack_poll_ms`, and the ack_state register is rewritten when
the judgement changes. A lost link is retried every `reconnect_ms`; results that
arrive meanwhile are counted as undelivered, and after reconnecting every camera's
newest block is written again.
"""

from __future__ import annotations

import logging
import queue
import threading
import time

from pymodbus.client import ModbusTcpClient
from pymodbus.exceptions import ModbusException

from pipeline.service.gateway.gateway_config import HandshakeConfig, ModbusConfig
from pipeline.service.gateway.gateway_metrics import GatewayMetrics
from pipeline.service.gateway.handshake import AckState, AckTracker
from pipeline.service.gateway.registers import RegisterMap
from pipeline.service.gateway.state import CameraSnapshot

log = logging.getLogger(__name__)
logging.getLogger("pymodbus").setLevel(logging.CRITICAL)  # we log link changes ourselves, once


class ModbusClientSink:
    name = "modbus"

    def __init__(self, config: ModbusConfig, handshake: HandshakeConfig, cameras: tuple[str, ...],
                 metrics: GatewayMetrics):
        self.config, self.metrics = config, metrics
        self.map = RegisterMap(config)
        self.ack_poll_s = handshake.ack_poll_ms / 1000
        self.trackers = {cid: AckTracker(handshake.ack_timeout_ms) for cid in cameras}
        self._queue: queue.Queue[CameraSnapshot] = queue.Queue(maxsize=10_000)
        self._latest: dict[str, CameraSnapshot] = {}
        self._ack_written: dict[str, AckState] = {}
        self._counted: dict[str, tuple[int, int]] = {}  # (acks, late) already on /metrics
        self._client = ModbusTcpClient(config.host, port=config.port, timeout=config.timeout_ms / 1000,
                                       retries=0, reconnect_delay=0)
        self._connected = False
        self._ever_connected = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="gateway-modbus-client", daemon=True)
        metrics.connected.labels(self.name).set(0)

    def start(self) -> None:
        self._thread.start()

    def update(self, snap: CameraSnapshot) -> None:
        try:
            self._queue.put_nowait(snap)
        except queue.Full:
            self.metrics.undelivered.labels(self.name).inc()

    def problem(self) -> str:
        return "" if self._connected else f"no link to the PLC at {self.config.host}:{self.config.port}"

    def _run(self) -> None:
        next_poll = 0.0
        while not self._stop.is_set():
            if not self._connected and not self._reconnect():
                continue
            try:
                snap = self._queue.get(timeout=self.ack_poll_s)
            except queue.Empty:
                snap = None
            try:
                if snap is not None:
                    self._write(snap)
                if time.monotonic() >= next_poll:
                    next_poll = time.monotonic() + self.ack_poll_s
                    self._poll_acks()
            except (ModbusException, OSError) as exc:
                self._lost(exc, snap)

    def _reconnect(self) -> bool:
        if self._client.connect():
            self._connected = True
            self.metrics.connected.labels(self.name).set(1)
            if self._ever_connected:
                self.metrics.reconnects.labels(self.name).inc()
            log.info("modbus: connected to the PLC at %s:%d", self.config.host, self.config.port)
            self._ever_connected = True
            for snap in list(self._latest.values()):
                self._queue.put(snap)  # the PLC may have restarted empty: give it the present state
            return True
        self._drain()
        self._stop.wait(self.config.reconnect_ms / 1000)
        return False

    def _drain(self) -> None:
        """While the link is down, keep only each camera's newest state; count lost results."""
        while True:
            try:
                snap = self._queue.get_nowait()
            except queue.Empty:
                return
            old = self._latest.get(snap.camera_id)
            if old is not None and old.result_counter != snap.result_counter:
                self.metrics.undelivered.labels(self.name).inc()
            self._latest[snap.camera_id] = snap

    def _lost(self, exc: Exception, snap: CameraSnapshot | None) -> None:
        log.warning("modbus: link to the PLC at %s:%d lost (%s); retrying every %d ms",
                    self.config.host, self.config.port, exc, self.config.reconnect_ms)
        self.metrics.write_failures.labels(self.name).inc()
        self._connected = False
        self.metrics.connected.labels(self.name).set(0)
        self._client.close()
        if snap is not None:
            self._queue.put(snap)  # written again (or counted) once the link is back

    def _write(self, snap: CameraSnapshot) -> None:
        old = self._latest.get(snap.camera_id)
        tracker = self.trackers[snap.camera_id]
        new_result = snap.is_new_result(None if old is None else old.result_counter)
        if new_result:
            tracker.written(snap.seq, time.monotonic_ns())
        state = tracker.poll(time.monotonic_ns())
        address = self.map.block_address(snap.index) + self.map.write_start
        reply = self._client.write_registers(address, self.map.encode(snap, state), device_id=self.config.device_id)
        if reply.isError():
            raise ModbusException(f"the PLC refused the write at {address}: {reply}")
        self._latest[snap.camera_id] = snap
        self._note_ack_state(snap, state)
        if new_result:
            self.metrics.observe_write(self.name, snap.camera_id, snap.t_publish_ns, time.time_ns())

    def _poll_acks(self) -> None:
        for cid, snap in list(self._latest.items()):
            hi, lo = self.map.ack_addresses(snap.index)
            first = min(hi, lo)
            reply = self._client.read_holding_registers(first, count=abs(hi - lo) + 1, device_id=self.config.device_id)
            if reply.isError():
                raise ModbusException(f"the PLC refused the read of the acknowledge at {first}: {reply}")
            words = reply.registers
            tracker = self.trackers[cid]
            state = tracker.acknowledged((words[hi - first] << 16) | words[lo - first], time.monotonic_ns())
            self._count_acks(cid, tracker)
            if state is not self._ack_written.get(cid):
                self._write_ack_state(snap, state)

    def _count_acks(self, cid: str, tracker: AckTracker) -> None:
        acks, late = self._counted.get(cid, (0, 0))
        self.metrics.acks.labels(cid, self.name).inc(tracker.acks - acks)
        self.metrics.acks_late.labels(cid, self.name).inc(tracker.late - late)
        self._counted[cid] = (tracker.acks, tracker.late)

    def _write_ack_state(self, snap: CameraSnapshot, state: AckState) -> None:
        address = self.map.block_address(snap.index) + self.map.offsets["ack_state"]
        reply = self._client.write_register(address, int(state), device_id=self.config.device_id)
        if reply.isError():
            raise ModbusException(f"the PLC refused the write at {address}: {reply}")
        self._note_ack_state(snap, state)

    def _note_ack_state(self, snap: CameraSnapshot, state: AckState) -> None:
        # a result block's write carries the ack state too: whichever write turns it LATE logs it
        if state is AckState.LATE and self._ack_written.get(snap.camera_id) is not AckState.LATE:
            log.warning("%s: the PLC did not acknowledge seq %d in time", snap.camera_id, snap.seq)
        self._ack_written[snap.camera_id] = state

    def close(self) -> None:
        self._stop.set()
        self._thread.join(3)
        self._client.close()
