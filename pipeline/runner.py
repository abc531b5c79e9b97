"""Runs a pipeline in the foreground: signals, `--frames`/`--duration`, the status line.

Owns the main thread's loop: it waits for the pipeline to finish, a stop signal
(SIGINT/SIGTERM), the duration to pass, or a stage to crash, then shuts down within the
bounded time and returns the process exit code. Each pass of the loop also ticks the
daemon service (readiness, watchdog pings, status, a reload requested by SIGHUP).
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from pathlib import Path
from typing import Callable

from pipeline.app import Parts, Pipeline
from pipeline.assembly import build_parts
from pipeline.daemon.service import DaemonService
from pipeline.config.models import PipelineConfig
from pipeline.status_line import StatusLine

log = logging.getLogger(__name__)

SHUTDOWN_TIMEOUT_S = 4.0  # + socket linger stays within the 5 s promised to systemd


def run_pipeline(config: PipelineConfig, frames: int | None = None, duration_s: float | None = None,
                 status: StatusLine | None = None, config_path: Path | None = None,
                 service: DaemonService | None = None, build: Callable[[PipelineConfig], Parts] = build_parts) -> int:
    service = service or DaemonService(config, config_path=config_path)
    stop = threading.Event()
    restore = _install_signal_handlers(stop, service.request_reload)  # before the slow part: a HUP must not kill
    try:
        service.open()
        pipeline = Pipeline(config, build(config), max_frames=frames)
    except BaseException:
        service.close()
        restore()
        raise
    service.attach(pipeline)
    status = status or StatusLine(pipeline.telemetry)
    try:
        pipeline.start()
        _wait(pipeline, stop, duration_s, status, service)
    finally:
        service.stopping()
        code = pipeline.shutdown(SHUTDOWN_TIMEOUT_S)
        status.close()
        service.close()
        restore()
    return code


def _wait(pipeline: Pipeline, stop: threading.Event, duration_s: float | None, status: StatusLine,
          service: DaemonService) -> None:
    end = time.monotonic() + duration_s if duration_s else None
    while not stop.wait(0.1):
        status.refresh()
        service.tick()
        if pipeline.captures_done or pipeline.telemetry.crashed.is_set():
            break
        if end is not None and time.monotonic() >= end:
            break


def _install_signal_handlers(stop: threading.Event, reload: Callable[[], None]):
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}

    def on_signal(signum, _frame):
        log.info("received %s, stopping", signal.Signals(signum).name)
        stop.set()

    def on_hangup(_signum, _frame):
        reload()  # only sets a flag: the main loop reloads (and logs) on its next pass

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    signal.signal(signal.SIGHUP, on_hangup)
    return lambda: [signal.signal(sig, handler) for sig, handler in previous.items()]
