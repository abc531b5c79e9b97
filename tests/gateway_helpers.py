"""Peers for the gateway tests: a real pymodbus TCP server playing the PLC (it records
every block the gateway writes and, like a PLC program, writes back the seq it
consumed), and starters for the gateway and pipeline processes. Loopback only."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import yaml
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from pipeline.service.gateway.gateway_config import DEFAULT_REGISTERS, ModbusConfig
from pipeline.service.gateway.loop_thread import LoopThread
from pipeline.service.gateway.registers import RegisterMap

BLOCK = 32


def start(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "pipeline", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def stop(proc: subprocess.Popen) -> str:
    """SIGTERM, wait, and the stderr it wrote."""
    if proc.poll() is None:
        proc.terminate()
    try:
        _, err = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    return err


def write_gateway_config(path: Path, endpoint: str, cameras: list[str], **sections) -> Path:
    data = {"pipelines": [{"endpoint": endpoint}], "cameras": cameras,
            "fail_safe": {"heartbeat_timeout_ms": 1000, "hold_after_gap_ms": 500},
            "handshake": {"ack_timeout_ms": 500, "ack_poll_ms": 20}, "http": {"port": 0}, **sections}
    path.write_text(yaml.safe_dump(data))
    return path


class PlcServer:
    """A pymodbus server as the PLC. `blocks[i]` lists every gateway write to camera i's
    block, decoded; with `acknowledging` set it writes back the seq of each new result."""

    def __init__(self, port: int, cameras: int):
        self.port, self.cameras = port, cameras
        self.map = RegisterMap(ModbusConfig(port=port))
        self.blocks: list[list[dict]] = [[] for _ in range(cameras)]
        self.acknowledging = True
        self._loop = LoopThread("test-plc")
        self._server: ModbusTcpServer | None = None
        self._loop.start()
        self.start()

    def start(self) -> None:
        device = SimDevice(1, [SimData(0, count=BLOCK * self.cameras, datatype=DataType.REGISTERS)],
                           action=self._action)
        ready = threading.Event()

        async def serve() -> None:
            self._server = ModbusTcpServer(device, address=("127.0.0.1", self.port))
            await self._server.serve_forever(background=True)  # listening when this returns
            ready.set()

        self._loop.run(serve(), 5)
        assert ready.wait(5)

    async def _action(self, fc, start, address, count, registers, set_values):
        if fc != 16 or set_values is None:
            return None
        camera, offset = divmod(address, BLOCK)
        if offset != self.map.write_start or len(set_values) != self.map.write_end - self.map.write_start:
            return None  # the ack_state rewrite alone
        block = {**self.map.decode(list(set_values)), "t_ns": time.time_ns()}
        self.blocks[camera].append(block)
        if self.acknowledging and block["result_counter"]:
            base = camera * BLOCK - start
            registers[base + DEFAULT_REGISTERS["ack_seq_hi"]] = block["seq"] >> 16
            registers[base + DEFAULT_REGISTERS["ack_seq_lo"]] = block["seq"] & 0xFFFF
        return None

    def results(self, camera: int) -> list[dict]:
        """One entry per new result (result_counter moved), in order."""
        out, last = [], 0
        for block in list(self.blocks[camera]):
            if block["result_counter"] and block["result_counter"] != last:
                out.append(block)
            last = block["result_counter"]
        return out

    def latest(self, camera: int) -> dict | None:
        return self.blocks[camera][-1] if self.blocks[camera] else None

    def shutdown(self) -> None:
        if self._server is not None:
            self._loop.run(self._server.shutdown(), 5)
            self._server = None

    def close(self) -> None:
        self.shutdown()
        self._loop.stop()
