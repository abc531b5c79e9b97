"""Batch augmentations on the training device, boxes kept in step with the pixels.

Owns what may vary between a training image and a real frame without changing its
labels: exposure (brightness, contrast), sensor noise and mirror flips. Flips keep the
letterbox layout intact because the padding of a 4:3 frame is symmetric; geometric
changes that would move the padding (rotation by 90 degrees, crops) are left out.
Input: uint8 (B, 3, S, S); output: float in 0..1, the model's input.
"""

from __future__ import annotations

import torch


def augment(images: torch.Tensor, boxes: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x = images.float() / 255.0
    b = x.shape[0]
    dev = x.device
    contrast = torch.empty(b, 1, 1, 1, device=dev).uniform_(0.7, 1.3)
    brightness = torch.empty(b, 1, 1, 1, device=dev).uniform_(-0.12, 0.12)
    mean = x.mean((1, 2, 3), keepdim=True)
    x = (x - mean) * contrast + mean + brightness
    sigma = torch.empty(b, 1, 1, 1, device=dev).uniform_(0.0, 0.03)
    x = (x + torch.randn_like(x) * sigma).clamp_(0.0, 1.0)
    return _flip(x, boxes.clone(), valid)


def _flip(x: torch.Tensor, boxes: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    size = x.shape[-1]
    for axis, dims in ((3, (0, 2)), (2, (1, 3))):  # horizontal, then vertical
        flip = torch.rand(x.shape[0], device=x.device) < 0.5
        x = torch.where(flip[:, None, None, None], x.flip(axis), x)
        lo, hi = dims
        flipped = torch.stack([size - boxes[..., hi], size - boxes[..., lo]], -1)
        sel = (flip[:, None] & valid)[..., None]
        boxes[..., [lo, hi]] = torch.where(sel, flipped, boxes[..., [lo, hi]])
    return x, boxes
