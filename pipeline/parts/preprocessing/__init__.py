"""Image preparation for the model input, in one place: the CPU letterbox (`letterbox`), the
fused GPU letterbox kernel (`letterbox_kernel`, `letterbox.cu`) and the GPU preprocess
(`gpu_preprocessing`). Only the CPU letterbox is imported here; the GPU modules need pycuda.

Owns the geometry convention (how a source image is scaled and padded into the model
input) that every preprocess implementation, CPU or GPU, must reproduce.
"""

from pipeline.parts.preprocessing.letterbox import BadFrame, Letterboxer, letterbox_geometry

__all__ = ["BadFrame", "Letterboxer", "letterbox_geometry"]
