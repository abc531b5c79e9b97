"""The one live status line an operator sees while `pipeline run` works.

Owns formatting telemetry into one line (fps, p50/p99 end-to-end latency, verdict
counts, drops) and redrawing it in place on a terminal. On a non-terminal (systemd
journal, CI log) it prints nothing until the final summary, so logs stay clean.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

from pipeline.telemetry import Telemetry


def format_status(t: Telemetry) -> str:
    p50, p99 = t.latency.percentiles(50, 99)
    c = t.counts
    drops = sum(q.drops for q in t.queues.values())
    cams = " ".join(f"{cid}:{cs.state[:4]}" for cid, cs in t.cameras.items()) if len(t.cameras) <= 4 else f"{len(t.cameras)} cams"
    return (f"{t.current_health().value:<8} {t.fps():6.1f} fps  p50 {p50:6.2f} ms  p99 {p99:6.2f} ms  "
            f"PASS {c['PASS']}  FAIL {c['FAIL']}  NOT_INSPECTED {c['NOT_INSPECTED']}  ERROR {c['ERROR']}  "
            f"drops {drops}  {cams}")


class StatusLine:
    def __init__(self, telemetry: Telemetry, stream: TextIO = sys.stderr, interval_s: float = 0.5):
        self.telemetry = telemetry
        self.stream = stream
        self.live = stream.isatty()
        self.interval_s = interval_s
        self._last = 0.0

    def refresh(self) -> None:
        now = time.monotonic()
        if self.live and now - self._last >= self.interval_s:
            self._last = now
            self.stream.write("\r\x1b[2K" + format_status(self.telemetry))
            self.stream.flush()

    def close(self) -> None:
        if self.live:
            self.stream.write("\r\x1b[2K")
        self.stream.write(format_status(self.telemetry) + "\n")
        self.stream.flush()
