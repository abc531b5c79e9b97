"""Runs a pipeline in the foreground: signals, `--frames`/`--duration`, the status line.

Owns the main thread's loop: start-up runs on a helper thread so that a stop signal
during it ends the process within a tick, before anything is inspected; then it waits
for the pipeline to finish, a stop signal
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
from pipeline.config.models import PipelineConfig
from pipeline.daemon.preflight import preflight
from pipeline.daemon.service import DaemonService
from pipeline.status_line import StatusLine

log = logging.getLogger(__name__)

SHUTDOWN_TIMEOUT_S = 4.0  # + socket linger stays within the 5 s promised to systemd
TICK_S = 0.1  # the main loop's period: status line, watchdog, reload, stop checks


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
                 service: DaemonService | None = None, build: Callable[[PipelineConfig], Parts] = build_parts) -> int:
    preflight(config)  # the same refusals as `pipeline check-config`, before anything starts
    service = service or DaemonService(config, config_path=config_path)
    stop = StopRequest()
    restore = _install_signal_handlers(stop, service.request_reload)  # before the slow part: a HUP must not kill
    try:
        service.open()
        parts = _build_interruptibly(config, build, stop)
        pipeline = Pipeline(config, parts, max_frames=frames) if parts is not None else None
    except BaseException:
        service.close()
        restore()
        raise
    if pipeline is None:  # stopped during start-up: nothing was inspected, nothing to drain
        service.close()
        restore()
        return 0
    service.attach(pipeline)
    status = status or StatusLine(pipeline.telemetry)
    pipeline.add_sink(status)
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


def _build_interruptibly(config: PipelineConfig, build: Callable[[PipelineConfig], Parts],
                         stop: StopRequest) -> Parts | None:
    """`build(config)` (model load, warm-up, maybe an engine build: minutes) on a helper
    thread, so SIGTERM/SIGINT meanwhile returns None within a tick instead of waiting for it
    and then inspecting parts. The abandoned build dies with the process (a daemon thread)."""
    result: dict[str, object] = {}

    def work() -> None:
        try:
            result["parts"] = build(config)
        except BaseException as exc:  # noqa: BLE001 - re-raised on the main thread
            result["error"] = exc

    worker = threading.Thread(target=work, name="start-up", daemon=True)
    worker.start()
    while worker.is_alive():
        worker.join(TICK_S)
        if stop:
            log.info("received %s during start-up, stopping before inspecting anything", stop.signal_name)
            return None
    if "error" in result:
        raise result["error"]  # type: ignore[misc]
    return result["parts"]  # type: ignore[return-value]


def _wait(pipeline: Pipeline, stop: StopRequest, duration_s: float | None, status: StatusLine,
          service: DaemonService) -> None:
    end = time.monotonic() + duration_s if duration_s else None
    while True:
        time.sleep(TICK_S)  # a periodic tick, not a wait for an event: the loop has work each pass
        if stop:
            log.info("received %s, stopping", stop.signal_name)
            break
        status.refresh()
        service.tick()
        if pipeline.captures_done or pipeline.telemetry.crashed.is_set():
            break
        if end is not None and time.monotonic() >= end:
            break


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
