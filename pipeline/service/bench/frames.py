"""Pre-rendered frames replayed by a `FrameSource`, so the source is never the bottleneck.

Rendering a synthetic 1080p frame costs ~10 ms of one core, more than the whole pipeline
should spend on it. The bench therefore renders a small ring of frames per camera once
(`prerender`, from the configured source's own `render(k)` or its first `read`s) and
`PrerenderedSource` hands them out again, flat out or on a fixed camera schedule.

What crosses the boundary: the ring's arrays are shared, read-only, by every job that
carries them (nothing downstream writes into a frame image). On a schedule each frame's
`camera_ts_ns` is the monotonic time it was due, so the bench can tell how late the
capture thread picked it up.

Frame slots: `PrerenderedSource` is a `SlotSource`, so the bench runs the capture stage's
slot path exactly as `pipeline run` does (frames in the pipeline's pooled, on the GPU path
page-locked, slots). The rendering stays out of the figures: a slot is filled with a ring
frame the first time it comes by (during warm-up, one copy), and from then on it keeps
its frame, which is handed out again without any copy, as if the camera had rendered
into the slot.
"""

from __future__ import annotations

import threading
import time

import numpy as np

from pipeline.core.contracts import RenderingSource
from pipeline.parts.sources.frame_source import FrameSource, SourceEnded, SourceFrame

FIRST_READ_TIMEOUT_S = 5.0


def prerender(source: FrameSource, count: int) -> list[SourceFrame]:
    """`count` frames from `source`: rendered directly when it can, else read in order."""
    if isinstance(source, RenderingSource):
        return [source.render(k) for k in range(count)]
    frames: list[SourceFrame] = []
    try:
        while len(frames) < count:
            got = source.read(FIRST_READ_TIMEOUT_S)
            if got is None:
                raise ValueError(f"the source delivered no frame within {FIRST_READ_TIMEOUT_S:g} s")
            frames.append(got)
    except SourceEnded:
        if not frames:
            raise ValueError("the source ended before delivering a frame") from None
    return frames


class PrerenderedSource:
    """Replays `frames` in a ring: at `fps` on a fixed schedule, or flat out when None.

    Like a camera, the schedule does not slip when the reader is late: a late reader gets
    the frames it missed back to back (the camera's buffer), each stamped with its due time.
    """

    copies_into_slot = False  # a ring frame is copied into a slot on its first visit only

    def __init__(self, frames: list[SourceFrame], fps: float | None, phase_s: float = 0.0,
                 stop: threading.Event | None = None):
        if not frames:
            raise ValueError("need at least one frame to replay")
        self._frames = frames
        self._period_ns = int(1e9 / fps) if fps else 0
        self._phase_ns = int(phase_s * 1e9)
        self._stop = stop or threading.Event()  # lets a sleeping read end early
        self._start_ns = 0
        self._next = 0
        self._in_slot: dict[int, SourceFrame] = {}  # slot address -> the ring frame it holds

    def open(self) -> None:
        self._start_ns = 0  # the schedule starts at the first read, not at open
        self._next = 0

    def close(self) -> None:
        pass

    def read_into(self, out: np.ndarray, timeout_s: float) -> SourceFrame | None:
        got = self.read(timeout_s)
        if got is None:
            return None
        address = out.__array_interface__["data"][0]
        held = self._in_slot.get(address)
        if held is None:
            if got.image.shape != out.shape:
                return got  # does not fit the slot: handed out in its own array
            np.copyto(out, got.image)  # the slot's first visit only
            held = self._in_slot[address] = got
        return SourceFrame(out, camera_ts_ns=got.camera_ts_ns, part_id=held.part_id, truth=held.truth)

    def read(self, timeout_s: float) -> SourceFrame | None:
        frame = self._frames[self._next % len(self._frames)]
        if not self._period_ns:
            self._next += 1
            return frame
        if not self._start_ns:
            self._start_ns = time.monotonic_ns() + self._phase_ns
        due_ns = self._start_ns + self._next * self._period_ns
        wait_s = (due_ns - time.monotonic_ns()) / 1e9
        if wait_s > timeout_s:
            self._stop.wait(timeout_s)
            return None
        if wait_s > 0:
            self._stop.wait(wait_s)
        self._next += 1
        return SourceFrame(frame.image, camera_ts_ns=due_ns, part_id=frame.part_id, truth=frame.truth)
