"""sd_notify as systemd hears it: a real unix datagram socket named by NOTIFY_SOCKET.

The listener here plays the service manager's part. The pipeline is the real one; only
the backend is wrapped (tests/fakes.py) to hang on one call, which must stop the
watchdog pings until it returns.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading

import pytest

from pipeline.composition.assembly import open_backend
from pipeline.composition.driver import RunDriver, Substitutions
from pipeline.service.daemon.daemon_service import DaemonService
from pipeline.service.daemon.notify import SdNotifier
from tests.fakes import FaultyBackend
from tests.pipeline_helpers import make_config, write_config
from tests.waiting import wait_until

pytestmark = pytest.mark.timeout(90)


class NotifyListener:
    """The service manager's end: a bound AF_UNIX datagram socket, recording messages."""

    def __init__(self, path: str):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.settimeout(0.1)
        self.messages: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            self.messages.extend(data.decode().split("\n"))

    def count(self, line: str) -> int:
        return self.messages.count(line)

    def wait(self, predicate, timeout_s: float = 20.0) -> bool:
        return wait_until(predicate, timeout_s)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


@pytest.fixture
def listener(tmp_path):
    lst = NotifyListener(str(tmp_path / "notify.sock"))
    yield lst
    lst.close()


def test_notifier_speaks_the_protocol_to_a_path_and_honours_watchdog_pid(listener):
    env = {"NOTIFY_SOCKET": listener.path, "WATCHDOG_USEC": "4000000", "WATCHDOG_PID": str(os.getpid())}
    notifier = SdNotifier.from_environment(env)
    assert notifier.watchdog_interval_s == 2.0
    notifier.ready("warm")
    notifier.watchdog()
    notifier.stopping()
    assert listener.wait(lambda: "STOPPING=1" in listener.messages)
    assert listener.messages == ["READY=1", "STATUS=warm", "WATCHDOG=1", "STOPPING=1"]
    notifier.close()
    other = SdNotifier.from_environment({**env, "WATCHDOG_PID": str(os.getpid() + 1)})
    assert other.watchdog_interval_s is None  # the watchdog is meant for another process
    assert not SdNotifier.from_environment({}).enabled  # no systemd: every call is a no-op
    SdNotifier.from_environment({}).ready()


def test_notifier_reaches_an_abstract_socket():
    name = f"inspection-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as manager:
        manager.bind("\0" + name)
        manager.settimeout(5)
        notifier = SdNotifier("@" + name)
        notifier.status("hello")
        assert manager.recv(100) == b"STATUS=hello"
        notifier.close()


def test_watchdog_pings_stop_while_a_stage_hangs_and_resume_after(listener, free_tcp_endpoint):
    config = make_config(free_tcp_endpoint, publisher={"await_subscriber_ms": 0}, watchdog={"stage_stall_s": 0.5})
    backend = FaultyBackend(open_backend(config.model), hang_on={15})
    driver = RunDriver(config, substitutions=Substitutions(backend=backend))
    service = DaemonService(config, SdNotifier(listener.path, watchdog_usec=200_000))
    service.open()
    driver.open()
    backend.arm()  # the hang is for a live frame, not the start-up's warm-up
    service.attach(driver.handle)
    ticking, ticks = threading.Event(), [0]

    def tick_every_50_ms() -> None:  # the daemon's main loop, as `pipeline run` ticks it
        while not ticking.wait(0.05):
            service.tick()
            ticks[0] += 1

    ticker = threading.Thread(target=tick_every_50_ms, daemon=True)
    try:
        driver.start()
        ticker.start()
        assert listener.wait(lambda: "READY=1" in listener.messages), listener.messages
        assert listener.wait(lambda: listener.count("WATCHDOG=1") >= 2)
        assert backend.hanging.wait(30)
        assert listener.wait(lambda: any("stuck: infer" in m for m in listener.messages)), listener.messages[-5:]
        pings_while_stuck, ticks_while_stuck = listener.count("WATCHDOG=1"), ticks[0]
        # 20 ticks of the daemon's loop (5 ping intervals of 200 ms at 50 ms each, then some) while the
        # test still holds the backend: none may ping
        assert wait_until(lambda: ticks[0] >= ticks_while_stuck + 20, 30)
        assert listener.count("WATCHDOG=1") == pings_while_stuck
        assert service.monitor.check().healthy is False
        backend.release.set()
        assert listener.wait(lambda: listener.count("WATCHDOG=1") > pings_while_stuck)
    finally:
        backend.release.set()
        ticking.set()
        ticker.join(5)
        service.stopping()
        code = driver.stop(10)
        service.close()
    assert code == 0
    assert listener.wait(lambda: "STOPPING=1" in listener.messages)


def test_pipeline_run_notifies_ready_watchdog_status_and_stopping(listener, tmp_path, free_tcp_endpoint):
    config = write_config(tmp_path / "line.yaml", free_tcp_endpoint, publisher={"await_subscriber_ms": 0})
    env = {**os.environ, "NOTIFY_SOCKET": listener.path, "WATCHDOG_USEC": "400000"}
    env.pop("WATCHDOG_PID", None)
    run = subprocess.Popen([sys.executable, "-m", "pipeline", "run", str(config)], env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert listener.wait(lambda: listener.count("WATCHDOG=1") >= 2, 60), listener.messages
        run.send_signal(signal.SIGTERM)
        _, err = run.communicate(timeout=30)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == 0, err
    ready = listener.messages.index("READY=1")
    assert listener.messages.index("STATUS=loading the model and opening the cameras") < ready
    assert ready < listener.messages.index("WATCHDOG=1")
    assert listener.messages.index("STOPPING=1") > ready
    assert any(m.startswith("STATUS=OK") and "fps" in m and "p99" in m for m in listener.messages)
