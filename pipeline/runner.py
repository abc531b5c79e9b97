"""Runs a pipeline in the foreground: signals, `--frames`/`--duration`, the status line.

Owns the main thread's loop: it waits for the pipeline to finish, a stop signal
(SIGINT/SIGTERM), the duration to pass, or a stage to crash, then shuts down within the
bounded time and returns the process exit code.
"""

from __future__ import annotations

import logging
import signal
import threading
import time

from pipeline.app import Pipeline
from pipeline.assembly import build_parts
from pipeline.config.models import PipelineConfig
from pipeline.status_line import StatusLine

log = logging.getLogger(__name__)

SHUTDOWN_TIMEOUT_S = 4.0  # + socket linger stays within the 5 s promised to systemd


def run_pipeline(config: PipelineConfig, frames: int | None = None, duration_s: float | None = None,
                 status: StatusLine | None = None) -> int:
    pipeline = Pipeline(config, build_parts(config), max_frames=frames)
    stop = threading.Event()
    restore = _install_signal_handlers(stop)
    status = status or StatusLine(pipeline.telemetry)
    try:
        pipeline.start()
        _wait(pipeline, stop, duration_s, status)
    finally:
        code = pipeline.shutdown(SHUTDOWN_TIMEOUT_S)
        status.close()
        restore()
    return code


def _wait(pipeline: Pipeline, stop: threading.Event, duration_s: float | None, status: StatusLine) -> None:
    end = time.monotonic() + duration_s if duration_s else None
    while not stop.wait(0.1):
        status.refresh()
        if pipeline.captures_done or pipeline.telemetry.crashed.is_set():
            break
        if end is not None and time.monotonic() >= end:
            break


def _install_signal_handlers(stop: threading.Event):
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

    def on_signal(signum, _frame):
        log.info("received %s, stopping", signal.Signals(signum).name)
        stop.set()

    for sig in previous:
        signal.signal(sig, on_signal)
    return lambda: [signal.signal(sig, handler) for sig, handler in previous.items()]
