"""Camera pixel formats -> the images preprocessing expects (HxW gray or HxWx3 BGR uint8,
or the raw HxW Bayer mosaic where the frame slot is page-locked for the GPU path).

Owns the mapping from GenICam Pixel Format Naming Convention names to conversions, and
the shape of a camera's frame slots (`slot_shape`). The input is a view of a driver
buffer, read before the buffer goes back to the driver; the output is written once:
into the lent frame slot when it fits (`into_slot`: copied, or converted by OpenCV
straight into it), else into a new array the caller owns (`to_pipeline_image`). Bayer
names follow GenICam (the colour of the first two pixels of the first row, BayerRG8 =
R G / G B), which is not OpenCV's older naming: OpenCV's *RGGB* constants are the ones
that match.
"""

from __future__ import annotations

import cv2
import numpy as np

from pipeline.config.cameras import CameraConfig
from pipeline.config.sources import GenICamSourceConfig
from pipeline.core.errors import PipelineError
from pipeline.core.messages import BayerPattern

# GenICam name -> (channels in the buffer, cv2 conversion code or None for none)
CONVERSIONS: dict[str, tuple[int, int | None]] = {
    "Mono8": (1, None),
    "BGR8": (3, None),
    "RGB8": (3, cv2.COLOR_RGB2BGR),
    "BayerRG8": (1, cv2.COLOR_BayerRGGB2BGR),
    "BayerBG8": (1, cv2.COLOR_BayerBGGR2BGR),
    "BayerGR8": (1, cv2.COLOR_BayerGRBG2BGR),
    "BayerGB8": (1, cv2.COLOR_BayerGBRG2BGR),
}
BAYER = {pattern.value: pattern for pattern in BayerPattern}


class PixelFormatError(PipelineError, ValueError):
    """A buffer that does not hold what its pixel format and size promise."""


def slot_shape(camera: CameraConfig, raw_bayer: bool) -> tuple[int, ...]:
    """The frame-slot shape of `camera`: HxW for Mono8, and for a Bayer format when
    `raw_bayer` (page-locked slots: the GPU kernel demosaics, the bus carries one byte a
    pixel); HxWx3 BGR otherwise (on the CPU path the camera's own capture thread
    demosaics into the slot). A GenICam camera's size is its `roi`, else width x height."""
    src = camera.source
    if not isinstance(src, GenICamSourceConfig):
        return (camera.height, camera.width, 3)
    h, w = (src.roi[3], src.roi[2]) if src.roi is not None else (camera.height, camera.width)
    one_byte = src.pixel_format == "Mono8" or (raw_bayer and src.pixel_format in BAYER)
    return (h, w) if one_byte else (h, w, 3)


def _view(data: bytes | memoryview | np.ndarray, pixel_format: str, width: int, height: int) -> np.ndarray:
    if pixel_format not in CONVERSIONS:
        raise PixelFormatError(f"pixel format {pixel_format!r} is not supported; use one of {sorted(CONVERSIONS)}")
    channels = CONVERSIONS[pixel_format][0]
    flat = np.frombuffer(data, np.uint8)
    expected = width * height * channels
    if flat.size < expected:
        raise PixelFormatError(f"{pixel_format} {width}x{height} needs {expected} bytes, the buffer has {flat.size}")
    return flat[:expected].reshape((height, width, channels) if channels > 1 else (height, width))


def to_pipeline_image(data: bytes | memoryview | np.ndarray, pixel_format: str, width: int, height: int) -> np.ndarray:
    """Convert one frame into a new array; raises PixelFormatError naming the format and
    the size mismatch."""
    image = _view(data, pixel_format, width, height)
    code = CONVERSIONS[pixel_format][1]
    if code is None:
        # the view borrows `data` (a driver buffer, or read-only bytes): give the caller its own array
        return image.copy()
    return cv2.cvtColor(image, code)


def into_slot(data: bytes | memoryview | np.ndarray, pixel_format: str, width: int, height: int,
              out: np.ndarray) -> tuple[np.ndarray, BayerPattern | None] | None:
    """Write one frame into the lent slot `out` in one pass: the raw mosaic (and its
    pattern) when `out` is HxW and the format is Bayer, else the gray or BGR image.
    None when the frame does not fit `out` (another size); PixelFormatError as above."""
    image = _view(data, pixel_format, width, height)
    if out.dtype != np.uint8:
        return None
    bayer = BAYER.get(pixel_format)
    if bayer is not None and out.shape == image.shape:
        np.copyto(out, image)
        return out, bayer
    channels, code = CONVERSIONS[pixel_format]
    wanted = (height, width) if channels == 1 and bayer is None else (height, width, 3)
    if out.shape != wanted:
        return None
    if code is None:
        np.copyto(out, image)
    else:
        cv2.cvtColor(image, code, dst=out)
    return out, None
