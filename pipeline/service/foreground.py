"""Runs a pipeline in the foreground: signals, `--frames`/`--duration`, the status line.

Owns what `pipeline run` adds around the run driver (pipeline.composition.driver): the signal
handlers (SIGINT/SIGTERM stop, SIGHUP reloads), the daemon service and the status line.
The driver builds the parts (a stop signal during start-up ends the process within a
tick, before anything is inspected), runs until the sources end (`--frames`), the
`--duration` passes, a stop signal or a crash, and shuts down within the bounded time;
its exit code is the process's. Each tick of the driver's loop redraws the status line
and ticks the daemon service (readiness, watchdog pings, status, a pending reload).
"""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from typing import Callable

from pipeline.composition.driver import SHUTDOWN_TIMEOUT_S, Build, RunDriver, StopReason, Until
from pipeline.config.models import PipelineConfig
from pipeline.service.daemon.daemon_service import DaemonService
from pipeline.service.daemon.preflight import preflight
from pipeline.service.status_line import StatusLine

log = logging.getLogger(__name__)


class StopRequest:
    """Set from a signal handler, read by the main loop. A plain attribute, not an Event:
    a handler runs on the main thread between bytecodes and must take no lock (the main
    thread may hold the very lock an Event or the logging module would need)."""

    def __init__(self) -> None:
        self.signal_name: str | None = None

    def __bool__(self) -> bool:
        return self.signal_name is not None


def run_pipeline(config: PipelineConfig, frames: int | None = None, duration_s: float | None = None,
                 status: StatusLine | None = None, config_path: Path | None = None,
                 service: DaemonService | None = None, build: Build | None = None) -> int:
    preflight(config)  # the same refusals as `pipeline check-config`, before anything starts
    service = service or DaemonService(config, config_path=config_path)
    stop = StopRequest()
    restore = _install_signal_handlers(stop, service.request_reload)  # before the slow part: a HUP must not kill
    driver = RunDriver(config, frames=frames, build=build)
    try:
        service.open()
        pipeline = driver.open(interrupted=stop.__bool__)
    except BaseException:
        service.close()
        restore()
        raise
    if pipeline is None:  # stopped during start-up: nothing was inspected, nothing to drain
        log.info("received %s during start-up, stopping before inspecting anything", stop.signal_name)
        service.close()
        restore()
        return 0
    service.attach(driver.handle)
    status = status or StatusLine(pipeline.telemetry)
    driver.add_sink(status)
    try:
        driver.start()
        if driver.run(Until(duration_s, signal=stop.__bool__), tick=_ticker(status, service)) is StopReason.SIGNAL:
            log.info("received %s, stopping", stop.signal_name)
    finally:
        service.stopping()
        code = driver.stop(SHUTDOWN_TIMEOUT_S)
        status.close()
        service.close()
        restore()
    return code


def _ticker(status: StatusLine, service: DaemonService) -> Callable[[], None]:
    def tick() -> None:  # every pass of the main loop: the line, readiness, watchdog, reload
        status.refresh()
        service.tick()

    return tick


def _install_signal_handlers(stop: StopRequest, reload: Callable[[], None]):
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}

    def on_signal(signum, _frame):
        stop.signal_name = signal.Signals(signum).name

    def on_hangup(_signum, _frame):
        reload()  # only sets a flag: the main loop reloads (and logs) on its next pass

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    signal.signal(signal.SIGHUP, on_hangup)
    return lambda: [signal.signal(sig, handler) for sig, handler in previous.items()]
