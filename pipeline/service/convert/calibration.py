"""Calibration data for INT8: a folder of images preprocessed exactly as the pipeline does.

Owns `ImageFolderReader`, an ONNX Runtime `CalibrationDataReader` that reads every image
of a folder (sorted, up to `limit`), letterboxes it with the pipeline's own
`Letterboxer` (the same convention the GPU kernel reproduces) and yields it as a batch
of one. It reports progress through `report(done, total)`, since calibrating a few
hundred images takes a while. What crosses the boundary: a folder path in; model
inputs out, one at a time (never the whole set in memory).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from onnxruntime.quantization import CalibrationDataReader

from pipeline.parts.preprocessing.letterbox import Letterboxer
from pipeline.service.convert.images import image_files, load_image


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
