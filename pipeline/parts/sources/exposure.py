"""When a frame was exposed, on the host's monotonic clock, and whether it came late.

Owns the mapping from a source's own frame timestamps (a GigE camera's tick counter, an
RTSP stream's presentation time) to `time.monotonic_ns()`. The offset between the two
clocks is learnt from the frames themselves: the smallest `arrival - camera_ts` seen
since the stream (re)started is the fastest path from sensor to host, so
`camera_ts + offset` is the exposure as the host would have seen it. A frame whose
arrival is later than that by more than `late_after_ns` was held up on its way (a
frozen peer that hands over the frame it had in flight seconds later): it is *stale*,
and never judges a part (pipeline.parts.sources.triggers) nor counts as the camera being
alive (the capture stage's stall clock).

A stream whose delay really changed gets a new offset instead of being stale for ever:
when its late frames have kept coming in real time for `rebase_after_ns` (their camera
timestamps advance as fast as their arrivals, within `late_after_ns / 2`). A burst of
buffered frames, or a frozen peer trickling out what it had, never qualifies: their
timestamps advance much faster, or much slower, than the host clock. A stream whose
timestamps go backwards (a new stream after a reconnect) gets a new offset at once, and
`reset()` starts afresh. Frames without a camera
timestamp are placed at their arrival, the best a source without a clock can say; from
a stream that had timestamps until then, such a frame is stale.
"""

from __future__ import annotations

LATE_AFTER_NS = 250_000_000  # well above decode/transport jitter, well below a part window
REBASE_AFTER_NS = 1_000_000_000


class ExposureClock:
    def __init__(self, late_after_ns: int = LATE_AFTER_NS, rebase_after_ns: int = REBASE_AFTER_NS):
        self.late_after_ns = late_after_ns
        self.rebase_after_ns = rebase_after_ns
        self.stale_frames = 0
        self.reset()

    def reset(self) -> None:
        self._offset_ns: int | None = None
        self._last_ts_ns: int | None = None
        self._late_since: tuple[int, int] | None = None  # (camera_ts, arrival) of the first late frame in a row

    def place(self, camera_ts_ns: int | None, arrival_ns: int) -> tuple[int, bool]:
        """(exposure time on the monotonic clock, stale) for one frame."""
        if camera_ts_ns is None:
            # a stream that had timestamps and hands over a frame without one: FFmpeg does
            # so with the frame it had in flight when its read timed out (a frozen server)
            stale = self._offset_ns is not None
            self.stale_frames += stale
            return arrival_ns, stale
        offset = arrival_ns - camera_ts_ns
        if self._offset_ns is None or self._last_ts_ns is None or camera_ts_ns < self._last_ts_ns:
            self._offset_ns = offset  # first frame, or a new stream: its own time base
        self._last_ts_ns = camera_ts_ns
        self._offset_ns = min(self._offset_ns, offset)
        if offset - self._offset_ns <= self.late_after_ns:
            self._late_since = None
            return camera_ts_ns + self._offset_ns, False
        if self._late_since is None:
            self._late_since = (camera_ts_ns, arrival_ns)
        if self._late_in_real_time(camera_ts_ns, arrival_ns):  # the path got slower for good
            self._offset_ns, self._late_since = offset, None
            return arrival_ns, False
        self.stale_frames += 1
        return camera_ts_ns + self._offset_ns, True

    def _late_in_real_time(self, camera_ts_ns: int, arrival_ns: int) -> bool:
        first_ts, first_arrival = self._late_since  # type: ignore[misc]
        waited = arrival_ns - first_arrival
        return waited >= self.rebase_after_ns and abs((camera_ts_ns - first_ts) - waited) <= self.late_after_ns // 2
