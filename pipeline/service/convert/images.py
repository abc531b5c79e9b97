"""Reading a folder of images for calibration and validation.

Owns which files count as images and how one is read (8-bit gray or BGR; alpha
dropped), with errors that name the file or folder. No ONNX Runtime here, so the
accuracy gate also runs where the quantization tools are not installed.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from pipeline.parts.sources.replay import IMAGE_SUFFIXES  # the replay source's: one list


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
