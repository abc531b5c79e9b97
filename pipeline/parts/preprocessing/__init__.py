"""Image preparation for the model input: letterboxing on the CPU.

Owns the geometry convention (how a source image is scaled and padded into the model
input) that every preprocess implementation, CPU or GPU, must reproduce.
"""

from pipeline.parts.preprocessing.letterbox import BadFrame, Letterboxer, letterbox_geometry

__all__ = ["BadFrame", "Letterboxer", "letterbox_geometry"]
