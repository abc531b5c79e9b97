"""CPU letterbox: a BGR or gray frame in, a normalised RGB CHW model input out.

Owns the letterbox convention. A GPU preprocess kernel must reproduce this output within
1/255, so the convention is deliberately plain:

* ``scale = min(w / src_w, h / src_h)`` (one scale for both axes, aspect preserved)
* resized size ``(nw, nh) = (max(1, round(src_w * scale)), max(1, round(src_h * scale)))``
  with Python's ``round`` (half to even), resized by ``cv2.resize(..., INTER_LINEAR)``,
  i.e. half-pixel centres: ``x_src = (x_dst + 0.5) * src_w / nw - 0.5``, clamped at
  the edges (OpenCV computes uint8 bilinear in fixed point, hence the 1/255 tolerance)
* integer placement of the resized image's top-left corner at
  ``(pad_x, pad_y) = ((w - nw) // 2, (h - nh) // 2)``; everything else is ``pad_value``
* channels reordered BGR -> RGB (gray replicated to 3), values divided by 255, laid out
  CHW into the caller's float32/float16 array
* a raw Bayer mosaic (a frame with its `BayerPattern`, from a lent frame slot) is first
  demosaiced with OpenCV (`cv2.cvtColor`, bilinear) into a scratch buffer, then treated
  as BGR; the GPU kernel reproduces that conversion exactly

The returned `Geometry` maps model-input pixels back to source pixels:
``x_src = (x_in - pad_x) / scale``.

What crosses the boundary: the caller owns `out` (typically a pooled `TensorSlot`
array); the Letterboxer owns its scratch buffers, one set per source size and channel
count, so steady-state frames allocate nothing. A Letterboxer is not thread-safe: give
each preprocess thread its own.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from pipeline.core.errors import FrameError
from pipeline.core.messages import BayerPattern, Geometry

_INV_255 = np.float32(1.0 / 255.0)
_OUT_DTYPES = (np.dtype(np.float32), np.dtype(np.float16))
# GenICam's Bayer names are the colours of the first row; OpenCV's *RGGB-style* codes match them
_BAYER_TO_BGR = {BayerPattern.RG: cv2.COLOR_BayerRGGB2BGR, BayerPattern.BG: cv2.COLOR_BayerBGGR2BGR,
                 BayerPattern.GR: cv2.COLOR_BayerGRBG2BGR, BayerPattern.GB: cv2.COLOR_BayerGBRG2BGR}


class BadFrame(FrameError):
    """The frame cannot be preprocessed (wrong dtype, rank or channel count)."""


def letterbox_geometry(src_w: int, src_h: int, input_w: int, input_h: int) -> tuple[Geometry, int, int]:
    """The `Geometry` of the convention above plus the resized size (nw, nh)."""
    if src_w <= 0 or src_h <= 0:
        raise BadFrame(f"frame has an empty size {src_w}x{src_h}")
    scale = min(input_w / src_w, input_h / src_h)
    nw = max(1, round(src_w * scale))
    nh = max(1, round(src_h * scale))
    pad_x, pad_y = (input_w - nw) // 2, (input_h - nh) // 2
    return Geometry(scale, float(pad_x), float(pad_y), src_w, src_h), nw, nh


def check_frame(image: object, bayer: BayerPattern | None = None) -> None:
    """Raise `BadFrame` unless `image` is HxW or HxWx3 uint8 (a Bayer mosaic: HxW, >= 3x3)."""
    if not isinstance(image, np.ndarray):
        raise BadFrame(f"frame is a {type(image).__name__}, expected a numpy uint8 array")
    shape_ok = image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3)
    if image.dtype != np.uint8 or not shape_ok or image.size == 0:
        raise BadFrame(
            f"frame has shape {image.shape} dtype {image.dtype}, expected HxW or HxWx3 uint8"
        )
    if bayer is not None and (image.ndim != 2 or min(image.shape) < 3):
        raise BadFrame(f"a {bayer.value} mosaic must be HxW of at least 3x3, got shape {image.shape}")


@dataclass
class _Scratch:
    """Per source size: the geometry and the two uint8 buffers the frame passes through."""

    geometry: Geometry
    resized: np.ndarray  # (nh, nw[, 3])
    canvas: np.ndarray  # (h, w[, 3]), the padded image, HWC
    borders: tuple[int, int, int, int]  # top, bottom, left, right


class Letterboxer:
    """Letterbox frames into a preallocated (3, h, w) float array; see the module docstring."""

    def __init__(self, input_size: tuple[int, int], pad_value: int = 114):
        w, h = input_size
        if w <= 0 or h <= 0:
            raise ValueError(f"input_size must be positive, got {input_size}")
        if not 0 <= pad_value <= 255:
            raise ValueError(f"pad_value must be in 0..255, got {pad_value}")
        self.input_size = (int(w), int(h))
        self.pad_value = int(pad_value)
        self._scratch: dict[tuple[int, int, int], _Scratch] = {}
        self._demosaic_scratch: dict[tuple[int, ...], np.ndarray] = {}

    def geometry(self, src_w: int, src_h: int) -> Geometry:
        """Where a src_w x src_h frame lands in the model input."""
        return letterbox_geometry(src_w, src_h, *self.input_size)[0]

    def __call__(self, image: np.ndarray, out: np.ndarray, bayer: BayerPattern | None = None) -> Geometry:
        """Write the letterboxed frame into `out` (3, h, w) and return its geometry."""
        check_frame(image, bayer)
        self._check_out(out)
        if bayer is not None:
            image = self._demosaiced(image, bayer)
        scratch = self._scratch_for(image)
        self._pad_into_canvas(image, scratch)
        canvas = scratch.canvas
        if canvas.ndim == 2:
            # Gray: broadcasting one plane over the three output channels replicates it.
            np.multiply(canvas[None, :, :], _INV_255, out=out)
        else:
            # One strided pass does BGR->RGB, HWC->CHW, uint8->float and the 1/255 scale.
            np.multiply(canvas[:, :, ::-1].transpose(2, 0, 1), _INV_255, out=out)
        return scratch.geometry

    def _demosaiced(self, mosaic: np.ndarray, bayer: BayerPattern) -> np.ndarray:
        """The mosaic as BGR, in a scratch buffer kept per size (nothing allocated per frame)."""
        bgr = self._demosaic_scratch.get(mosaic.shape)
        if bgr is None:
            bgr = self._demosaic_scratch[mosaic.shape] = np.empty((*mosaic.shape, 3), np.uint8)
        cv2.cvtColor(mosaic, _BAYER_TO_BGR[bayer], dst=bgr)
        return bgr

    def _check_out(self, out: np.ndarray) -> None:
        w, h = self.input_size
        if not isinstance(out, np.ndarray) or out.shape != (3, h, w) or out.dtype not in _OUT_DTYPES:
            got = f"{out.shape} {out.dtype}" if isinstance(out, np.ndarray) else type(out).__name__
            raise ValueError(f"out must be a (3, {h}, {w}) float32/float16 array, got {got}")

    def _scratch_for(self, image: np.ndarray) -> _Scratch:
        src_h, src_w = image.shape[:2]
        channels = 1 if image.ndim == 2 else 3
        key = (src_w, src_h, channels)
        scratch = self._scratch.get(key)
        if scratch is None:
            scratch = self._scratch[key] = self._new_scratch(src_w, src_h, channels)
        return scratch

    def _new_scratch(self, src_w: int, src_h: int, channels: int) -> _Scratch:
        w, h = self.input_size
        geometry, nw, nh = letterbox_geometry(src_w, src_h, w, h)
        tail = () if channels == 1 else (3,)
        top, left = int(geometry.pad_y), int(geometry.pad_x)
        borders = (top, h - nh - top, left, w - nw - left)
        resized = np.empty((nh, nw, *tail), np.uint8)
        canvas = np.empty((h, w, *tail), np.uint8)
        return _Scratch(geometry, resized, canvas, borders)

    def _pad_into_canvas(self, image: np.ndarray, scratch: _Scratch) -> None:
        resized = scratch.resized
        if resized.shape[:2] == image.shape[:2]:
            np.copyto(resized, image)  # already the right size: resizing would only copy
        else:
            nh, nw = resized.shape[:2]
            cv2.resize(image, (nw, nh), dst=resized, interpolation=cv2.INTER_LINEAR)
        top, bottom, left, right = scratch.borders
        value = (self.pad_value,) * 3
        cv2.copyMakeBorder(
            resized, top, bottom, left, right, cv2.BORDER_CONSTANT, dst=scratch.canvas, value=value
        )
