"""What the bench records per published verdict.

Owns the record format shared by every system measured (pipeline, naive loop,
Ultralytics): camera id, outcome, late flag, capture time, the stage marks, the
publish time, the camera's own time and the stages' take times, all
`time.monotonic_ns()`. Recording is one tuple append per verdict (no
arithmetic, no lock beyond the GIL's), so measuring does not move what it measures;
`report` turns the records into numbers afterwards.

A `Recorder` is a `VerdictSink` of the pipeline it measures: the publish stage hands
it each verdict right after the send, with the stage's one clock reading that is also
the message's `latency_ms.total` (`PublishedVerdict.t_publish_ns`), so the bench's
end-to-end figure is the wire's. The naive loop and Ultralytics record the same way:
one reading, sent as the message's publish time and recorded.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from pipeline.core.messages import Job, PublishedVerdict

# (camera_id, outcome value, late, t_capture_ns, marks, t_publish_ns, camera_ts_ns, takes)
Record = tuple[str, str, bool, int, tuple[tuple[str, int], ...], int, "int | None", tuple[tuple[str, int], ...]]


@dataclass
class Recorder:
    """Verdicts of frames captured inside [start_ns, end_ns); the window excludes warm-up."""

    start_ns: int = 2**63 - 1  # nothing is recorded before `open_window`
    end_ns: int = 2**63 - 1
    records: list[Record] = field(default_factory=list)
    missed: int = 0  # frames due in the window that a loop never got to (no verdict)

    def open_window(self, duration_s: float) -> None:
        now = time.monotonic_ns()
        self.end_ns = now + int(duration_s * 1e9)  # end first: the publish thread reads both
        self.start_ns = now

    def record(self, job: Job, t_publish_ns: int) -> None:
        frame = job.frame
        if self.start_ns <= frame.t_capture_ns < self.end_ns:
            self.records.append((frame.camera_id, job.verdict.outcome.value, job.verdict.late, frame.t_capture_ns,
                                 job.marks, t_publish_ns, frame.camera_ts_ns, job.takes))

    def verdict_published(self, published: PublishedVerdict) -> None:
        self.record(published.job, published.t_publish_ns)

    @property
    def window_s(self) -> float:
        return (self.end_ns - self.start_ns) / 1e9
