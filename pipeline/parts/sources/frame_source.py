"""What every frame source provides: the `FrameSource` protocol and its small types.

A source owns one camera (or a synthetic/replayed stand-in). The capture stage owns the
thread, the frame counter and the timestamps; the source only opens, reads and closes.
A source returns images it no longer needs: a driver buffer is copied or converted
before `read` returns, so a slow consumer never starves the camera.

Frame slots: a `SlotSource` can also write a frame into a buffer the pipeline lends it
(`read_into(out, timeout_s)`, `out` a uint8 array of the camera's shape from a
`pipeline.core.buffers.FramePool`, page-locked on the GPU path). It returns a `SourceFrame`
whose image is `out` itself; a frame that does not fit `out` (another size) comes back
in an array of its own and the capture stage keeps the slot for the next read. Writing
straight into the slot is what saves the per-frame allocation and host copy. The slot's
shape is the camera's layout (`pixel_formats.slot_shape`): a one-byte HxW slot of a
Bayer camera receives the raw mosaic and the frame names its `BayerPattern`, which
`read` never does. A source that would only copy an image decoded elsewhere into the
slot says so (`copies_into_slot`) and is lent slots only when they are page-locked.
"""

from __future__ import annotations

from pipeline.core.contracts import CameraSource, FrameSource, SlotSource, SourceFrame
from pipeline.core.errors import PipelineError
from pipeline.core.messages import ReasonCode
from pipeline.core.states import CameraState

# The protocols live in pipeline.core.contracts with the other parts' contracts; re-exported here.
__all__ = ["CameraSource", "CameraState", "FrameSource", "LostFrame", "SlotSource", "SourceEnded", "SourceError",
           "SourceFrame", "lost_frame"]


class SourceEnded(PipelineError):
    """The source has no more frames (end of a replayed file without `loop`)."""


class SourceError(PipelineError):
    """The source cannot deliver (device gone, stream broken); the message says why."""

    reason = ReasonCode.SOURCE_DOWN
    frame_lost = False  # the link is the problem, not one frame
    part_id: str | None = None


class LostFrame(SourceError):
    """A frame the source knows existed but cannot deliver (a corrupt file, a trigger that
    produced no image): the capture stage gives it an ERROR verdict `bad_frame`."""

    reason = ReasonCode.BAD_FRAME
    frame_lost = True

    def __init__(self, message: str, part_id: str | None = None):
        super().__init__(message)
        self.part_id = part_id


def lost_frame(message: str, part_id: str | None = None) -> LostFrame:
    """The `LostFrame` for `message` (kept for the sources that build it this way)."""
    return LostFrame(message, part_id)
