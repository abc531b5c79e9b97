"""Calibration data for INT8: a folder of images preprocessed exactly as the pipeline does.

Owns `ImageFolderReader`, an ONNX Runtime `CalibrationDataReader` that reads every image
of a folder (sorted, up to `limit`), letterboxes it with the pipeline's own
`Letterboxer` (the same convention the GPU kernel reproduces) and yields it as a batch
of one. It reports progress through `report(done, total)`, since calibrating a few
hundred images takes a while. What crosses the boundary: a folder path in; model
inputs out, one at a time (never the whole set in memory).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import cv2
import numpy as np
from onnxruntime.quantization import CalibrationDataReader

from pipeline.imaging.letterbox import Letterboxer

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}


def image_files(folder: Path, limit: int | None = None) -> list[Path]:
    """The folder's images, sorted; ValueError naming the folder when there are none."""
    if not folder.is_dir():
        raise ValueError(f"{folder}: not a folder of images")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ValueError(f"{folder}: no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return files[:limit]


def load_image(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None or image.dtype != np.uint8 or image.ndim not in (2, 3):
        raise ValueError(f"{path}: not a readable 8-bit image")
    if image.ndim == 3 and image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    return image


class ImageFolderReader(CalibrationDataReader):
    def __init__(self, folder: Path, input_name: str, input_size: tuple[int, int], limit: int | None = None,
                 report: Callable[[int, int], None] = lambda done, total: None):
        self.files = image_files(folder, limit)
        self.input_name = input_name
        self._letterbox = Letterboxer(input_size)
        self._report = report
        self._next = 0
        w, h = input_size
        self._tensor = np.empty((3, h, w), np.float32)

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._next >= len(self.files):
            return None
        self._letterbox(load_image(self.files[self._next]), self._tensor)
        self._next += 1
        self._report(self._next, len(self.files))
        return {self.input_name: self._tensor[None].copy()}

    def rewind(self) -> None:
        self._next = 0
