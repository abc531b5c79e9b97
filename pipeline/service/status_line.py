"""The one live status line an operator sees while `pipeline run` works.

Owns formatting telemetry into one line (health, fps over the last seconds, p50/p99
end-to-end latency, verdict counts with FAIL split into defect and deadline, drops,
cameras) that fits a given width, and showing it:

- on a terminal, redrawn in place at the bottom; log records written to the same
  terminal go *above* it (the root logger's handlers on that stream write through
  `_AboveStatus`, which clears the line, writes the record and redraws), so a log line
  and the status line are never glued together;
- elsewhere (systemd journal, a pipe, CI), one plain line every `plain_interval_s`.

What crosses the boundary: a `Telemetry` to read and a text stream to write; the line is
itself a `VerdictSink` (the runner adds it to the pipeline), which counts the FAILs whose
reason is the deadline. Its latency figures are telemetry's window of
`PublishedVerdict.latency_ms`, the wire's `latency_ms.total`.
"""

from __future__ import annotations

import logging
import shutil
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import TextIO

from pipeline.core.messages import Outcome, PublishedVerdict, ReasonCode
from pipeline.core.states import CameraState
from pipeline.core.telemetry import Telemetry

log = logging.getLogger("pipeline.status")

MIN_WIDTH = 80  # the narrowest terminal the line is designed for; narrower ones get a cut line
FPS_WINDOW_S = 5.0
CLEAR = "\r\x1b[2K"


@dataclass(frozen=True)
class Counts:
    passed: int
    fail_defect: int
    fail_deadline: int
    not_inspected: int
    error: int


def format_status(t: Telemetry, fps: float, counts: Counts, width: int | None = None) -> str:
    """The line; when it is wider than `width`, whole fields are left off, least important
    first (drops, then NOT_INSPECTED/ERROR, then cameras while all stream), never cut in
    the middle."""
    p50, p99 = t.latency.percentiles(50, 99)
    drops = sum(q.drops for q in t.queues.values())
    fields = [  # (text, priority: lower stays longer)
        (f"{t.current_health().value} {fps:.1f}fps p50 {p50:.1f} p99 {p99:.1f}ms", 0),
        (f"PASS {counts.passed} FAIL defect {counts.fail_defect} late {counts.fail_deadline}", 0),
        (f"NOT_INSPECTED {counts.not_inspected} ERROR {counts.error}", 2),
        (f"drops {drops}", 3),
        (_cameras(t), 0 if any(cs.state is not CameraState.STREAMING for cs in t.cameras.values()) else 1),
    ]
    while width is not None and max(f[1] for f in fields) > 0 and len(_join(fields)) > width:
        fields.remove(max(fields, key=lambda f: f[1]))
    line = _join(fields)
    return line if width is None else line[:width]


def _join(fields: list[tuple[str, int]]) -> str:
    return "  ".join(text for text, _ in fields if text)


def _cameras(t: Telemetry) -> str:
    if len(t.cameras) <= 2:
        return "  ".join(f"{cid} {cs.state.value}" for cid, cs in t.cameras.items())
    streaming = sum(cs.state is CameraState.STREAMING for cs in t.cameras.values())
    others = " ".join(f"{cid} {cs.state.value}" for cid, cs in t.cameras.items() if cs.state is not CameraState.STREAMING)
    return f"cams {streaming}/{len(t.cameras)} STREAMING" + (f", {others}" if others else "")


class RecentRate:
    """Verdicts per second over the last `window_s` (not since start: a warm-up or a
    pause long ago does not hide what the line does now)."""

    def __init__(self, window_s: float = FPS_WINDOW_S):
        self.window_s = window_s
        self._samples: deque[tuple[float, int]] = deque()

    def add(self, now_s: float, total: int) -> float:
        self._samples.append((now_s, total))
        while len(self._samples) > 2 and now_s - self._samples[1][0] >= self.window_s:
            self._samples.popleft()
        t0, n0 = self._samples[0]
        return (total - n0) / (now_s - t0) if now_s > t0 else 0.0


class StatusLine:
    def __init__(self, telemetry: Telemetry, stream: TextIO = sys.stderr, interval_s: float = 0.5,
                 plain_interval_s: float = 10.0):
        self.telemetry = telemetry
        self.stream = stream
        self.live = stream.isatty()
        self.interval_s = interval_s if self.live else plain_interval_s
        self._last = time.monotonic()
        self._rate = RecentRate()
        self._fps = 0.0
        self._late_fails = 0  # written by the publish thread only (`verdict_published`)
        self._lock = threading.Lock()  # one writer at a time on the terminal: the line or a log record
        self._shown = ""
        self._redirected: list[tuple[logging.StreamHandler, TextIO]] = []
        if self.live:
            self._put_logs_above()

    def verdict_published(self, published: PublishedVerdict) -> None:
        verdict = published.job.verdict
        if verdict.outcome is Outcome.FAIL and any(r.code is ReasonCode.DEADLINE for r in verdict.reasons):
            self._late_fails += 1

    def counts(self) -> Counts:
        c = self.telemetry.counts
        late = min(self._late_fails, c["FAIL"])
        return Counts(c["PASS"], c["FAIL"] - late, late, c["NOT_INSPECTED"], c["ERROR"])

    def refresh(self) -> None:
        now = time.monotonic()
        self._fps = self._rate.add(now, sum(cs.verdicts_published for cs in self.telemetry.cameras.values()))
        if now - self._last < self.interval_s:
            return
        self._last = now
        if self.live:
            self._draw(format_status(self.telemetry, self._fps, self.counts(), _terminal_width(self.stream)))
        else:
            log.info("%s", format_status(self.telemetry, self._fps, self.counts()))

    def close(self) -> None:
        """The final summary line, below the logs, and the terminal's streams given back."""
        for handler, stream in self._redirected:
            handler.setStream(stream)
        self._redirected.clear()
        with self._lock:
            self.stream.write((CLEAR if self.live else "") + format_status(self.telemetry, self._fps, self.counts()) + "\n")
            self.stream.flush()
            self._shown = ""

    def _draw(self, line: str) -> None:
        with self._lock:
            self._shown = line
            self.stream.write(CLEAR + line)
            self.stream.flush()

    def _put_logs_above(self) -> None:
        for handler in logging.getLogger().handlers:
            if isinstance(handler, logging.StreamHandler) and _same_stream(handler.stream, self.stream):
                self._redirected.append((handler, handler.setStream(_AboveStatus(self))))

    def write_above(self, text: str) -> None:
        with self._lock:
            self.stream.write(CLEAR + text)
            if text.endswith("\n") and self._shown:
                self.stream.write(self._shown)
            self.stream.flush()


class _AboveStatus:
    """The stream a log handler writes to while the status line is live."""

    def __init__(self, status: StatusLine):
        self._status = status

    def write(self, text: str) -> int:
        self._status.write_above(text)
        return len(text)

    def flush(self) -> None:
        pass  # write_above flushes


def _same_stream(a: TextIO, b: TextIO) -> bool:
    try:
        return a is b or a.fileno() == b.fileno()
    except (AttributeError, OSError, ValueError):
        return False


def _terminal_width(stream: TextIO) -> int:
    try:
        import os

        columns = os.get_terminal_size(stream.fileno()).columns
    except (AttributeError, OSError, ValueError):
        columns = shutil.get_terminal_size((MIN_WIDTH, 24)).columns
    return max(20, columns - 1)  # never the last column: some terminals wrap there
