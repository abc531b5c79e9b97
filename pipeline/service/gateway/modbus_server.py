"""Modbus/TCP server output: the gateway listens, the PLC polls its blocks.

Owns one pymodbus TCP server on its own thread and event loop, with the same register
map as the client output (docs/GATEWAY.md). Each change of a camera replaces that
camera's gateway-owned words in an image; every PLC read of the holding registers is
answered from the image, so one read of a block (function 3) is one consistent result.
The PLC writes only the acknowledge registers (function 6 or 16); a write anywhere else
is refused with "illegal data address". The acknowledge is judged every `ack_poll_ms`.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time

from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from pipeline.composition.app import StartupError
from pipeline.service.gateway.gateway_config import HandshakeConfig, ModbusConfig
from pipeline.service.gateway.gateway_metrics import GatewayMetrics
from pipeline.service.gateway.handshake import AckState, AckTracker
from pipeline.service.gateway.loop_thread import LoopThread
from pipeline.service.gateway.registers import RegisterMap
from pipeline.service.gateway.state import CameraSnapshot

log = logging.getLogger(__name__)
logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
_WRITES = (6, 16, 23)


class ModbusServerSink:
    name = "modbus"

    def __init__(self, config: ModbusConfig, handshake: HandshakeConfig, cameras: tuple[str, ...],
                 metrics: GatewayMetrics):
        self.config, self.metrics, self.cameras = config, metrics, cameras
        self.map = RegisterMap(config)
        self.ack_poll_s = handshake.ack_poll_ms / 1000
        self.trackers = {cid: AckTracker(handshake.ack_timeout_ms) for cid in cameras}
        self._size = config.base_address + len(cameras) * config.block_size
        self._image = [0] * self._size
        self._latest: dict[str, CameraSnapshot] = {}
        self._counted: dict[str, tuple[int, int]] = {}
        self._lock = threading.Lock()
        self._registers: list[int] | None = None  # pymodbus' own storage, seen in the action
        self._start_address = 0
        self._allowed = {a for i in range(len(cameras)) for a in self.map.ack_addresses(i)}
        self._loop = LoopThread("gateway-modbus-server")
        self._server: ModbusTcpServer | None = None
        self._started = False
        self._ack_task: asyncio.Future | None = None
        for i, cid in enumerate(cameras):
            self._place(CameraSnapshot(cid, i), AckState.NONE)
            for a in self.map.ack_addresses(i):
                self._image[a] = 0xFFFF  # "nothing acknowledged" until the PLC writes

    def start(self) -> None:
        self._loop.start()
        try:
            self._loop.run(self._start(), 10)
        except OSError as exc:
            raise StartupError(f"modbus: cannot listen on {self.config.host}:{self.config.port}: "
                               f"{exc.strerror or exc}; set modbus.port to a free port") from None
        self._started = True
        self.metrics.connected.labels(self.name).set(1)
        log.info("modbus: serving holding registers on %s:%d", self.config.host, self.config.port)

    async def _start(self) -> None:
        device = SimDevice(self.config.device_id, [SimData(0, count=self._size, values=list(self._image),
                                                           datatype=DataType.REGISTERS)], action=self._action)
        self._server = ModbusTcpServer(device, address=(self.config.host, self.config.port))
        await self._server.serve_forever(background=True)
        if not self._server.transport:
            raise OSError(f"port {self.config.port} not available")
        self._ack_task = asyncio.ensure_future(self._ack_loop())

    async def _action(self, fc, start, address, count, registers, set_values):
        self._registers, self._start_address = registers, start
        if fc in _WRITES and set_values is not None:
            if any(a not in self._allowed for a in range(address, address + len(set_values))):
                return ExcCodes.ILLEGAL_ADDRESS  # the PLC owns only the acknowledge registers
            return None
        with self._lock:
            for i in range(len(self.cameras)):
                base = self.map.block_address(i)
                lo, hi = base + self.map.write_start, base + self.map.write_end
                registers[lo - start:hi - start] = self._image[lo:hi]
        return None

    def update(self, snap: CameraSnapshot) -> None:
        old = self._latest.get(snap.camera_id)
        tracker = self.trackers[snap.camera_id]
        new = snap.is_new_result(None if old is None else old.result_counter)
        if new:
            tracker.written(snap.seq, time.monotonic_ns())
        self._place(snap, tracker.poll(time.monotonic_ns()))
        if new:
            self.metrics.observe_write(self.name, snap.camera_id, snap.t_publish_ns, time.time_ns())

    def _place(self, snap: CameraSnapshot, state: AckState) -> None:
        base = self.map.block_address(snap.index)
        words = self.map.encode(snap, state)
        with self._lock:
            self._latest[snap.camera_id] = snap
            self._image[base + self.map.write_start:base + self.map.write_end] = words

    async def _ack_loop(self) -> None:
        while True:
            await asyncio.sleep(self.ack_poll_s)
            registers = self._registers
            for i, cid in enumerate(self.cameras):
                if registers is None:
                    break
                hi, lo = (a - self._start_address for a in self.map.ack_addresses(i))
                self._judge(cid, i, (registers[hi] << 16) | registers[lo])

    def _judge(self, cid: str, index: int, acked: int) -> None:
        tracker = self.trackers[cid]
        state = tracker.acknowledged(acked, time.monotonic_ns()) if acked != 0xFFFFFFFF else tracker.poll(
            time.monotonic_ns())
        acks, late = self._counted.get(cid, (0, 0))
        self.metrics.acks.labels(cid, self.name).inc(tracker.acks - acks)
        self.metrics.acks_late.labels(cid, self.name).inc(tracker.late - late)
        self._counted[cid] = (tracker.acks, tracker.late)
        address = self.map.block_address(index) + self.map.offsets["ack_state"]
        with self._lock:
            if self._image[address] != int(state) and state is AckState.LATE:
                log.warning("%s: the PLC did not acknowledge in time", cid)
            self._image[address] = int(state)

    async def _stop(self) -> None:
        if self._ack_task is not None:
            self._ack_task.cancel()
            await asyncio.gather(self._ack_task, return_exceptions=True)
        assert self._server is not None
        await self._server.shutdown()

    def problem(self) -> str:
        return "" if self._started else "the Modbus server is not running"

    def close(self) -> None:
        if self._server is not None:
            self._loop.run(self._stop(), 5)
        self._loop.stop()
