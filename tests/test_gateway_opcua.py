"""`pipeline gateway` with an OPC UA server output and a Modbus/TCP server output, end to
end on loopback: the real demo pipeline publishing, the gateway as a subprocess, and
real clients as the PLC (asyncua's client subscribing to the nodes and acknowledging,
pymodbus' client polling the registers)."""

from __future__ import annotations

import asyncio
import datetime as dt
import signal
import time

import pytest

pytest.importorskip("asyncua")
pytest.importorskip("pymodbus")

from asyncua import Client, ua  # noqa: E402
from pymodbus.client import ModbusTcpClient  # noqa: E402

from pipeline.service.gateway.gateway_config import ModbusConfig  # noqa: E402
from pipeline.service.gateway.registers import RegisterMap  # noqa: E402
from tests.gateway_helpers import start, stop, write_gateway_config  # noqa: E402
from tests.pipeline_helpers import write_config  # noqa: E402
from tests.ports import free_port  # noqa: E402
from tests.waiting import wait_until  # noqa: E402

pytestmark = [pytest.mark.timeout(180), pytest.mark.slow]
NS = "urn:inspection-pipeline:gateway"


class SeqRecorder:
    """asyncua subscription handler: every Sequence change, in order."""

    def __init__(self):
        self.values: list[int] = []

    def datachange_notification(self, node, val, data):
        self.values.append(val)


async def connect(url: str, timeout_s: float = 60) -> Client:
    deadline = time.monotonic() + timeout_s
    while True:
        client = Client(url, timeout=5)
        try:
            await client.connect()
            return client
        except (OSError, asyncio.TimeoutError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)  # a retry with a deadline: the server may still be starting


async def until(condition, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if await condition():
            return True
        await asyncio.sleep(0.05)  # tests.waiting.wait_until's poll, for asyncua's async calls
    return bool(await condition())


def test_every_verdict_reaches_an_opcua_client_once_and_a_kill_turns_it_not_ready(tmp_path, free_tcp_endpoint):
    frames = 120
    url = f"opc.tcp://127.0.0.1:{free_port()}/inspection/"
    gw = start("gateway", str(write_gateway_config(tmp_path / "gw.yaml", free_tcp_endpoint, ["cam0"],
                                                   opcua={"endpoint": url})))
    line = write_config(tmp_path / "line.yaml", free_tcp_endpoint, cameras=1, fps=30)
    run = None

    async def scenario():
        nonlocal run
        client = await connect(url)
        try:
            ns = await client.get_namespace_index(NS)
            node = lambda name: client.get_node(ua.NodeId(f"Inspection.cam0.{name}", ns))  # noqa: E731
            recorder = SeqRecorder()
            sub = await client.create_subscription(10, recorder)
            await sub.subscribe_data_change(node("Sequence"), queuesize=10_000)
            run = start("run", str(line), "--frames", str(frames))
            assert await until(lambda: _has(recorder, frames), 90), recorder.values[-3:]
            await node("AckSequence").write_value(ua.Variant(frames - 1, ua.VariantType.UInt32))
            assert await until(lambda: _is(node("AckState"), "IN_TIME"), 5)
            assert await node("Verdict").read_data_type_as_variant_type() is ua.VariantType.String
            assert isinstance(await node("CaptureTime").read_value(), dt.datetime)
            assert isinstance(await node("Ready").read_value(), bool)
            # the node's initial 0 comes first; seq 0 rewriting it may or may not be reported again
            assert recorder.values in (list(range(frames)), [0] + list(range(frames))), recorder.values[:5]
            assert run.wait(60) == 0
            run = start("run", str(line))
            assert await until(lambda: _is(node("Ready"), True), 60), "never ready"
            run.send_signal(signal.SIGKILL)
            run.wait(10)
            assert await until(lambda: _is(node("Ready"), False), 2.2)
            assert await node("NotReadyReason").read_value() == "HEARTBEAT_MISSING"
        finally:
            await client.disconnect()

    try:
        asyncio.run(scenario())
    finally:
        if run is not None:
            stop(run)
        err = stop(gw)
    assert "Traceback" not in err


async def _has(recorder: SeqRecorder, frames: int) -> bool:
    return frames - 1 in recorder.values


async def _is(node, value) -> bool:
    return await node.read_value() == value


def test_a_plc_polling_the_modbus_server_sees_every_result_or_knows_it_missed_it(tmp_path, free_tcp_endpoint):
    frames, port = 60, free_port()
    gw = start("gateway", str(write_gateway_config(tmp_path / "gw.yaml", free_tcp_endpoint, ["cam0"],
                                                   modbus={"mode": "server", "port": port})))
    m = RegisterMap(ModbusConfig())
    plc = ModbusTcpClient("127.0.0.1", port=port, timeout=1, retries=0)
    run = None
    try:
        assert wait_until(plc.connect, 30)
        run = start("run", str(write_config(tmp_path / "line.yaml", free_tcp_endpoint, cameras=1, fps=10)),
                    "--frames", str(frames))
        seen, counters, last = [], [], 0
        deadline = time.monotonic() + 90
        while (not seen or seen[-1] < frames - 1) and time.monotonic() < deadline:
            block = m.decode(plc.read_holding_registers(0, count=m.write_end).registers)
            if block["result_counter"] and block["result_counter"] != last:
                last = block["result_counter"]
                seen.append(block["seq"])
                counters.append(last)
                plc.write_registers(30, [block["seq"] >> 16, block["seq"] & 0xFFFF])  # acknowledge
            time.sleep(0.005)  # the PLC's scan cycle: this loop plays the PLC polling its registers
        assert seen and seen[-1] == frames - 1
        assert seen == sorted(set(seen))  # never an old result taken for a new one
        # the counter accounts for every result, polled or not: none lost at the gateway
        assert counters[-1] - counters[0] == seen[-1] - seen[0]
        assert plc.read_holding_registers(8, count=1).registers[0] in (1, 2)  # WAITING or IN_TIME
        refused = plc.write_registers(6, [1])  # the verdict register belongs to the gateway
        assert refused.isError()
    finally:
        plc.close()
        if run is not None:
            stop(run)
        err = stop(gw)
    assert "Traceback" not in err
