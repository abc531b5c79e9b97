"""The status line on a real terminal (a pty sized 80 columns) and on a pipe: it fits
the width, log records land above it and never on its line, FAIL is split into defect
and deadline, fps covers the last seconds; without a terminal, a periodic plain line."""

from __future__ import annotations

import fcntl
import io
import logging
import os
import struct
import termios
import time

import pytest

from pipeline.core.messages import Frame, Job, Outcome, PublishedVerdict, Reason, ReasonCode, Verdict
from pipeline.core.states import CameraState
from pipeline.core.telemetry import Health, Telemetry
from pipeline.service.status_line import CLEAR, Counts, RecentRate, StatusLine, format_status


@pytest.fixture
def terminal():
    """(writer stream, reader fd) of a pty 80 columns wide: a real terminal device."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    stream = os.fdopen(slave, "w")
    yield stream, master
    stream.close()
    os.close(master)


def read_all(fd: int) -> str:
    os.set_blocking(fd, False)
    chunks = []
    try:
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
    except BlockingIOError:
        pass
    return b"".join(chunks).decode().replace("\r\n", "\n")


def busy_telemetry() -> Telemetry:
    t = Telemetry(["cam0"])
    t.set_health(Health.OK)
    t.cameras["cam0"].move_to(CameraState.STREAMING)
    t.cameras["cam0"].last_frame_ns = time.monotonic_ns()  # it has delivered: health can be OK
    for ms in (12.5, 20.0, 25.0):
        t.latency.add(ms)
    t.counts.update({"PASS": 123456, "FAIL": 40, "NOT_INSPECTED": 2, "ERROR": 1})
    return t


def settled(verdict: Verdict) -> Job:
    return Job(Frame("cam0", 0, None, time.monotonic_ns(), time.time_ns()), verdict=verdict)


def test_on_a_terminal_logs_go_above_the_line_and_it_fits_80_columns(terminal):
    stream, master = terminal
    handler = logging.StreamHandler(stream)
    logger = logging.getLogger()
    logger.addHandler(handler)
    try:
        status = StatusLine(busy_telemetry(), stream, interval_s=0.0)
        status.refresh()
        logging.getLogger("test").warning("camera cam0: cannot open rtsp://x")
        status.refresh()
        status.close()
    finally:
        logger.removeHandler(handler)
    out = read_all(master)
    drawn = [seg for seg in out.split(CLEAR) if seg.startswith("OK ") and "\n" not in seg]
    assert drawn and all(len(seg) <= 79 for seg in drawn)
    assert CLEAR + "camera cam0: cannot open rtsp://x\n" in out  # cleared first: never glued to the line
    assert "ms  PASS" in out.split("cannot open rtsp://x\n")[1]  # and the line is back below it
    assert handler.stream is stream  # given back on close


def test_deadline_fails_are_counted_apart_from_defect_fails():
    t = busy_telemetry()
    status = StatusLine(t, io.StringIO())
    for reason in (ReasonCode.DEADLINE, ReasonCode.DEFECT):
        published = PublishedVerdict(settled(Verdict(Outcome.FAIL, (Reason(reason),))), 0, time.monotonic_ns())
        for sink in (t, status):  # as the pipeline's sinks receive it: telemetry first
            sink.verdict_published(published)
    assert status.counts() == Counts(123456, 41, 1, 2, 1)  # 40 before, one more of each kind
    line = format_status(t, 30.0, status.counts())
    assert "FAIL defect 41 late 1" in line and "NOT_INSPECTED 2 ERROR 1" in line


def test_fps_is_over_the_last_seconds_not_since_start():
    rate = RecentRate(window_s=5.0)
    rate.add(0.0, 0)
    rate.add(100.0, 0)  # idle for 100 s (warm-up, a stopped belt)
    for i in range(1, 11):
        fps = rate.add(100.0 + i, 30 * i)
    assert fps == pytest.approx(30.0)


def test_without_a_terminal_a_plain_line_is_logged_now_and_then(caplog):
    stream = io.StringIO()
    status = StatusLine(busy_telemetry(), stream, plain_interval_s=0.0)
    with caplog.at_level(logging.INFO, logger="pipeline.status"):
        status.refresh()
    assert stream.getvalue() == ""  # nothing drawn, no escape codes
    assert any("PASS 123456" in r.getMessage() for r in caplog.records)
    status.close()
    assert CLEAR not in stream.getvalue() and stream.getvalue().count("\n") == 1
