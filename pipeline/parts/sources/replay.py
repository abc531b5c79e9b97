"""Replays a folder of images or a video file as if it were a camera.

Owns the file handles of one replay: the sorted image list or the `cv2.VideoCapture`.
What crosses the boundary: `SourceFrame`s exactly as decoded (no resizing; preprocess
letterboxes), HxW uint8 for grayscale images and HxWx3 BGR uint8 for colour ones.

Frame slots (`read_into`): a video is decoded straight into the lent slot
(`VideoCapture.read(image=slot)`); an image file is decoded by `cv2.imdecode`, which
has no destination, into an array of its own and copied once into the slot, which pays
only on the GPU path (page-locked slots), so the capture stage lends slots to a folder
replay only there (`copies_into_slot`). An image of another size or channel count than
the slot stays in its own array, and the log says so once.

A folder is read in name order (.png .jpg .jpeg .bmp .tif .tiff, case-insensitive). A file
that does not decode raises a frame-lost `SourceError` naming it, and the next `read()`
goes on with the next file, so one bad image costs one ERROR verdict, not the stream.
Before decoding, a JPEG or PNG is checked from its bytes (`frame_check`): one cut short
or declaring more pixels than the camera's configured width x height is such a bad file
too, never decoded, so half a picture is never judged and a huge one never stalls capture.
At the end, `loop` starts over; otherwise `read()` raises `SourceEnded` (and keeps doing so).
"""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np

from pipeline.config.cameras import CameraConfig
from pipeline.config.sources import ReplaySourceConfig
from pipeline.parts.sources.frame_check import frame_problem
from pipeline.parts.sources.frame_source import SourceEnded, SourceError, SourceFrame, lost_frame
from pipeline.parts.sources.pacing import Pacer

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"})


class ReplaySource:
    """A `FrameSource` (and `SlotSource`) over a folder of images or one video file."""

    def __init__(self, path: Path | str, fps: float = 30.0, loop: bool = False, realtime: bool = True,
                 max_size: tuple[int, int] | None = None):
        if fps <= 0:
            raise ValueError(f"fps must be > 0, got {fps}")
        self.path = Path(path)
        self.loop = loop
        self.max_size = max_size  # (width, height): larger images are refused from their header
        self._pacer = Pacer(fps, realtime)
        self._files: list[Path] | None = None  # folder mode
        self._video: cv2.VideoCapture | None = None  # video mode
        self._next = 0
        self._ended = False
        self._misfit_logged = False

    @property
    def copies_into_slot(self) -> bool:
        """True for a folder (decoded elsewhere, then copied); a video decodes into the slot."""
        return self._video is None

    @classmethod
    def from_config(cls, camera: CameraConfig) -> "ReplaySource":
        src = camera.source
        if not isinstance(src, ReplaySourceConfig):
            raise TypeError(f"camera {camera.id}: expected a replay source, got {src.kind!r}")
        return cls(src.path, camera.fps, src.loop, src.realtime, (camera.width, camera.height))

    def open(self) -> None:
        if not self.path.exists():
            raise SourceError(f"replay path does not exist: {self.path}")
        if self.path.is_dir():
            self._files = sorted(p for p in self.path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not self._files:
                raise SourceError(f"replay folder has no images ({', '.join(sorted(IMAGE_SUFFIXES))}): {self.path}")
        else:
            self._video = self._open_video()
        self._next, self._ended = 0, False
        self._pacer.reset()

    def close(self) -> None:
        if self._video is not None:
            self._video.release()
            self._video = None
        self._files = None

    def read(self, timeout_s: float) -> SourceFrame | None:
        return self.read_into(None, timeout_s)

    def read_into(self, out: np.ndarray | None, timeout_s: float) -> SourceFrame | None:
        """The next frame, in the lent slot `out` when it fits (a `SlotSource`)."""
        if self._files is None and self._video is None:
            raise SourceError(f"replay source not open: {self.path}")
        if self._ended:
            raise SourceEnded(f"end of replay: {self.path}")
        if not self._pacer.wait(timeout_s):
            return None
        image = self._next_image(out) if self._files is not None else self._next_video_frame(out)
        if out is not None and image is not out:
            self._log_misfit(image, out)
        return SourceFrame(image)

    def _log_misfit(self, image: np.ndarray, out: np.ndarray) -> None:
        if not self._misfit_logged:
            self._misfit_logged = True
            log.warning("replay %s: a frame of shape %s does not fit the camera's frame slots (%s): such frames "
                        "come in arrays of their own; set the camera's width and height to the images' size",
                        self.path, "x".join(map(str, image.shape)), "x".join(map(str, out.shape)))

    # ----------------------------------------------------------------- folder

    def _next_image(self, out: np.ndarray | None) -> np.ndarray:
        assert self._files is not None
        if self._next >= len(self._files):
            if not self.loop:
                self._ended = True
                raise SourceEnded(f"end of replay: {self.path}")
            self._next = 0
        file = self._files[self._next]
        self._next += 1  # before decoding: a bad file is skipped by the next read
        try:
            data = file.read_bytes()
        except OSError as exc:
            raise lost_frame(f"cannot read image {file}: {exc.strerror or exc}") from None
        problem = frame_problem(data, self.max_size)
        if problem is not None:
            raise lost_frame(f"{file}: {problem}")
        # ANYCOLOR keeps gray images single-channel and gives colour (even with alpha) as BGR
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_ANYCOLOR)
        if image is None:
            raise lost_frame(f"cannot decode image {file}")
        if out is None or out.shape != image.shape or out.dtype != image.dtype:
            return image
        np.copyto(out, image)  # imdecode has no destination: the one copy, into the page-locked slot
        return out

    # ----------------------------------------------------------------- video

    def _open_video(self) -> cv2.VideoCapture:
        video = cv2.VideoCapture(str(self.path))
        if not video.isOpened():
            video.release()
            raise SourceError(f"cannot open video file (unknown format or codec?): {self.path}")
        return video

    def _next_video_frame(self, out: np.ndarray | None) -> np.ndarray:
        assert self._video is not None
        # decoded straight into the slot when it fits (OpenCV allocates a new array when not)
        ok, image = self._video.read() if out is None else self._video.read(image=out)
        if ok:
            self._next += 1
            return image
        if not self.loop:
            self._ended = True
            raise SourceEnded(f"end of replay: {self.path}")
        if self._next == 0:
            raise SourceError(f"video file has no frames: {self.path}")
        # reopening is more reliable than seeking to frame 0 across codecs
        self._video.release()
        self._video = self._open_video()
        self._next = 0
        return self._next_video_frame(out)
