"""`pipeline gateway` with a Modbus/TCP client output, end to end on loopback: the real
demo pipeline publishing (a subprocess), the gateway (a subprocess), and a real pymodbus
server as the PLC that records every block and acknowledges like a PLC program. Counts
are compared with an independent ZeroMQ subscriber."""

from __future__ import annotations

import signal
import subprocess
import sys
import urllib.request

import pytest

pytest.importorskip("pymodbus")

from pipeline.service.gateway.state import NotReadyReason, VerdictCode  # noqa: E402
from tests.gateway_helpers import PlcServer, start, stop, write_gateway_config  # noqa: E402
from tests.pipeline_helpers import VerdictCollector, write_config  # noqa: E402
from tests.ports import free_port  # noqa: E402
from tests.waiting import wait_until  # noqa: E402

pytestmark = [pytest.mark.timeout(180), pytest.mark.slow]


@pytest.fixture
def plc():
    server = PlcServer(free_port(), cameras=2)
    yield server
    server.close()


def gateway_for(tmp_path, endpoint, plc, cameras=("cam0",), **sections):
    config = write_gateway_config(tmp_path / "gateway.yaml", endpoint, list(cameras),
                                  modbus={"mode": "client", "port": plc.port, "reconnect_ms": 100}, **sections)
    return start("gateway", str(config))


def test_every_verdict_reaches_the_plc_once_in_order(tmp_path, free_tcp_endpoint, plc):
    frames = 150
    gw = gateway_for(tmp_path, free_tcp_endpoint, plc, cameras=("cam0", "cam1"))
    assert wait_until(lambda: plc.latest(1) is not None, 30), "the gateway never wrote its first state"
    run = start("run", str(write_config(tmp_path / "line.yaml", free_tcp_endpoint, cameras=2, fps=30)),
                "--frames", str(frames))
    collector = VerdictCollector(free_tcp_endpoint)  # after the gateway: it may miss the first few
    try:
        assert run.wait(timeout=120) == 0, run.stderr.read()
        assert wait_until(lambda: all(len(plc.results(i)) >= frames for i in (0, 1)), 20), \
            [[r["seq"] for r in plc.results(i)][:5] for i in (0, 1)]
        for index, cam in enumerate(("cam0", "cam1")):
            results = plc.results(index)
            published = collector.verdicts[cam]
            assert [r["seq"] for r in results] == list(range(frames))
            # the independent subscriber may have joined a little late (ZeroMQ slow joiner):
            # every verdict it saw must be the one the PLC got for that seq
            assert len(published) >= frames // 2
            assert all(results[v["seq"]]["verdict"] == VerdictCode[v["verdict"]] for v in published)
        # the pipeline stopped: its last heartbeat said STOPPING, then silence
        assert wait_until(lambda: plc.latest(0)["ready"] == 0, 3)
    finally:
        collector.close()
        err = stop(gw)
    assert "Traceback" not in err


def test_a_killed_pipeline_turns_not_ready_in_time_and_a_restart_recovers(tmp_path, free_tcp_endpoint, plc):
    line = write_config(tmp_path / "line.yaml", free_tcp_endpoint, cameras=1, fps=30)
    gw = gateway_for(tmp_path, free_tcp_endpoint, plc)
    run = start("run", str(line))
    try:
        assert wait_until(lambda: (plc.latest(0) or {}).get("ready") == 1, 60), "never ready"
        run.send_signal(signal.SIGKILL)
        run.wait(10)
        # heartbeat_timeout_ms is 1000; a heartbeat was due within 200 ms; 1 s of slack for a loaded box
        assert wait_until(lambda: plc.latest(0)["ready"] == 0, 2.2)
        assert plc.latest(0)["not_ready_reason"] == NotReadyReason.HEARTBEAT_MISSING
        run = start("run", str(line))
        assert wait_until(lambda: plc.latest(0)["not_ready_reason"] == NotReadyReason.RESTART, 60)
        assert wait_until(lambda: plc.latest(0)["ready"] == 1, 10), "did not recover by itself"
        assert plc.latest(0)["gaps"] >= 1
    finally:
        stop(run)
        err = stop(gw)
    # the new instance id tells the restart (before any seq could): one line naming both ids
    assert "RESTART: publisher instance" in err and "; cam0 not ready for" in err and "Traceback" not in err


def test_a_plc_that_stops_acknowledging_is_shown_late(tmp_path, free_tcp_endpoint, plc):
    gw = gateway_for(tmp_path, free_tcp_endpoint, plc)
    run = start("run", str(write_config(tmp_path / "line.yaml", free_tcp_endpoint, cameras=1, fps=10)))
    try:
        assert wait_until(lambda: (plc.latest(0) or {}).get("ack_state") == 2, 60), "never acknowledged in time"
        plc.acknowledging = False
        # ack_state lives in a register the PLC reads; read it back the way a PLC does
        from pymodbus.client import ModbusTcpClient

        client = ModbusTcpClient("127.0.0.1", port=plc.port, timeout=1, retries=0)
        client.connect()
        ack_state = lambda: client.read_holding_registers(8, count=1).registers[0]  # noqa: E731
        assert wait_until(lambda: ack_state() == 3, 5)
        plc.acknowledging = True
        assert wait_until(lambda: ack_state() == 2, 5)
        client.close()
    finally:
        stop(run)
        err = stop(gw)
    assert "did not acknowledge" in err


def test_a_plc_that_disappears_and_returns_gets_results_again(tmp_path, free_tcp_endpoint, plc):
    http_port = free_port()
    gw = gateway_for(tmp_path, free_tcp_endpoint, plc, http={"port": http_port})
    run = start("run", str(write_config(tmp_path / "line.yaml", free_tcp_endpoint, cameras=1, fps=20)))
    try:
        assert wait_until(lambda: len(plc.results(0)) >= 10, 60)
        plc.shutdown()
        before = len(plc.results(0))
        plc.start()
        assert wait_until(lambda: len(plc.results(0)) >= before + 10, 15), "no writes after the PLC came back"
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{http_port}/metrics", timeout=5).read().decode()
        assert 'gateway_reconnects_total{output="modbus"} 1.0' in metrics
    finally:
        stop(run)
        err = stop(gw)
    assert "link to the PLC" in err and "Traceback" not in err


def test_without_the_gateway_extra_it_says_what_to_install(tmp_path):
    config = write_gateway_config(tmp_path / "gateway.yaml", "tcp://127.0.0.1:1", ["cam0"], modbus={"port": 1})
    code = ("import sys; sys.modules['pymodbus'] = None; from pipeline.service.cli import main; "
            f"sys.exit(main(['gateway', {str(config)!r}]))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "pip install 'inspection-pipeline[gateway]'" in done.stderr and "Traceback" not in done.stderr


def test_a_bad_gateway_config_names_the_line_and_key(tmp_path):
    path = tmp_path / "gateway.yaml"
    path.write_text("cameras: [cam0]\nmodbus:\n  port: 99999\n")
    done = subprocess.run([sys.executable, "-m", "pipeline", "gateway", str(path)], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2 and "modbus.port (line 3)" in done.stderr and "Traceback" not in done.stderr
