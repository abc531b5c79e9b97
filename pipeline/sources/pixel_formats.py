"""Camera pixel formats -> the images preprocessing expects (HxW gray or HxWx3 BGR uint8).

Owns the mapping from GenICam Pixel Format Naming Convention names to conversions. The
input is a bytes-like copy of a driver buffer (the driver buffer itself has already been
given back); the output is a new array the caller owns. Bayer names follow GenICam (the
colour of the first two pixels of the first row, BayerRG8 = R G / G B), which is not
OpenCV's older naming: OpenCV's *RGGB* constants are the ones that match.
"""

from __future__ import annotations

import cv2
import numpy as np

from pipeline.errors import PipelineError

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


class PixelFormatError(PipelineError, ValueError):
    """A buffer that does not hold what its pixel format and size promise."""


def to_pipeline_image(data: bytes | memoryview | np.ndarray, pixel_format: str, width: int, height: int) -> np.ndarray:
    """Convert one frame; raises PixelFormatError naming the format and the size mismatch."""
    if pixel_format not in CONVERSIONS:
        raise PixelFormatError(f"pixel format {pixel_format!r} is not supported; use one of {sorted(CONVERSIONS)}")
    channels, code = CONVERSIONS[pixel_format]
    flat = np.frombuffer(data, np.uint8)
    expected = width * height * channels
    if flat.size < expected:
        raise PixelFormatError(f"{pixel_format} {width}x{height} needs {expected} bytes, the buffer has {flat.size}")
    image = flat[:expected].reshape((height, width, channels) if channels > 1 else (height, width))
    if code is None:
        # frombuffer borrows `data` (read-only for bytes): give the caller an array of its own.
        return image.copy()
    return cv2.cvtColor(image, code)
