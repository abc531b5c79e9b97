"""What every frame source provides: the `FrameSource` protocol and its small types.

A source owns one camera (or a synthetic/replayed stand-in). The capture stage owns the
thread, the frame counter and the timestamps; the source only opens, reads and closes.
A source returns images it no longer needs: a driver buffer is copied or converted
before `read` returns, so a slow consumer never starves the camera.

Frame slots: a `SlotSource` can also write a frame into a buffer the pipeline lends it
(`read_into(out, timeout_s)`, `out` a uint8 array of the camera's shape from a
`pipeline.buffers.FramePool`, page-locked on the GPU path). It returns a `SourceFrame`
whose image is `out` itself; a frame that does not fit `out` (another size) comes back
in an array of its own and the capture stage gives the slot back. Writing straight into
the slot is what saves the per-frame allocation and host copy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from pipeline.messages import GroundTruth
from pipeline.states import CameraState  # re-exported: sources report their link in it


class SourceEnded(Exception):
    """The source has no more frames (end of a replayed file without `loop`)."""


class SourceError(Exception):
    """The source cannot deliver (device gone, stream broken); the message says why."""


@dataclass(frozen=True, slots=True)
class SourceFrame:
    image: np.ndarray  # HxWx3 uint8 BGR or HxW uint8 gray, owned by the receiver
    camera_ts_ns: int | None = None
    part_id: str | None = None
    truth: GroundTruth | None = None


@runtime_checkable
class FrameSource(Protocol):
    def open(self) -> None: ...

    def read(self, timeout_s: float) -> SourceFrame | None:
        """The next frame, or None when none arrived within `timeout_s`.
        Raises SourceEnded at a clean end, SourceError when broken."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class SlotSource(FrameSource, Protocol):
    """A FrameSource that can write its next frame into a lent buffer."""

    def read_into(self, out: np.ndarray, timeout_s: float) -> SourceFrame | None:
        """Like `read`, with the image written into `out` (returned as the frame's image)."""
        ...


@runtime_checkable
class CameraSource(FrameSource, Protocol):
    """A FrameSource for a real camera, which keeps its own link up (reconnects by itself).

    `link_state` is CONNECTING, STREAMING or DOWN as the source sees its link; the capture
    stage adds STALLED (linked but silent). `free_running` sources deliver frames by
    themselves; the others deliver one per trigger. `fire_trigger` sends a software trigger
    and returns False when the source has none or is not connected; it may be called from
    another thread than `read`."""

    link_state: CameraState
    free_running: bool

    def fire_trigger(self) -> bool: ...


def lost_frame(message: str, part_id: str | None = None) -> SourceError:
    """A SourceError for a frame the source knows existed but cannot deliver (a corrupt
    file, a trigger that produced no image): the capture stage gives it an ERROR verdict."""
    exc = SourceError(message)
    exc.frame_lost = True  # type: ignore[attr-defined]
    exc.part_id = part_id  # type: ignore[attr-defined]
    return exc
