"""When a frame was exposed, on the host's monotonic clock, and whether it came late.

Owns the mapping from a source's own frame timestamps (a GigE camera's tick counter, an
RTSP stream's presentation time) to `time.monotonic_ns()`. The offset between the two
clocks is learnt from the frames themselves: the smallest `arrival - camera_ts` seen
since the stream (re)started is the fastest path from sensor to host, so
`camera_ts + offset` is the exposure as the host would have seen it. A frame whose
arrival is later than that by more than `late_after_ns` was held up on its way (a
frozen peer that hands over the frame it had in flight seconds later): it is *stale*,
and never judges a part (pipeline.sources.triggers) nor counts as the camera being
alive (the capture stage's stall clock).

A stream whose delay really changed (every frame late, `rebase_after` in a row) gets a
new offset instead of being stale for ever; so does one whose timestamps go backwards
(a new stream after a reconnect), and `reset()` starts afresh. Frames without a camera
timestamp are placed at their arrival: the best a source without a clock can say.
"""

from __future__ import annotations

LATE_AFTER_NS = 250_000_000  # well above decode/transport jitter, well below a part window
REBASE_AFTER = 5


class ExposureClock:
    def __init__(self, late_after_ns: int = LATE_AFTER_NS, rebase_after: int = REBASE_AFTER):
        self.late_after_ns = late_after_ns
        self.rebase_after = rebase_after
        self.stale_frames = 0
        self.reset()

    def reset(self) -> None:
        self._offset_ns: int | None = None
        self._last_ts_ns: int | None = None
        self._late_in_row = 0

    def place(self, camera_ts_ns: int | None, arrival_ns: int) -> tuple[int, bool]:
        """(exposure time on the monotonic clock, stale) for one frame."""
        if camera_ts_ns is None:
            return arrival_ns, False
        offset = arrival_ns - camera_ts_ns
        if self._offset_ns is None or self._last_ts_ns is None or camera_ts_ns < self._last_ts_ns:
            self._offset_ns = offset  # first frame, or a new stream: its own time base
        self._last_ts_ns = camera_ts_ns
        self._offset_ns = min(self._offset_ns, offset)
        if offset - self._offset_ns <= self.late_after_ns:
            self._late_in_row = 0
            return camera_ts_ns + self._offset_ns, False
        self._late_in_row += 1
        if self._late_in_row >= self.rebase_after:  # the path got slower for good, not one frozen frame
            self._offset_ns, self._late_in_row = offset, 0
            return arrival_ns, False
        self.stale_frames += 1
        return camera_ts_ns + self._offset_ns, True
