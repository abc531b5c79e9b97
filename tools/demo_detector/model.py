"""The network: a small conv backbone, a two-level feature pyramid, one anchor-free head.

Owns the architecture and the meaning of its output. `forward` returns, per anchor
point (grid cell centre) of strides 8 and 16, a raw box (centre offset and log size, in
units of the stride) and raw class logits; `predict` turns them into what the ONNX file exposes,
YOLOv8's layout `(batch, 4 + C, anchors)`: cx, cy, w, h in input pixels, then sigmoid
class scores. The decoding lives inside the exported graph, so the pipeline's decoder
needs nothing model-specific.

Why this shape: defects are small (6..80 px at the model input) and CPU time is tight
(<= 15 ms on 2 cores), so the strides stop at 8/16 for prediction while a stride-32
stage still adds context through the top-down path.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

STRIDES = (8, 16)  # the levels that predict
INPUT_MULTIPLE = 32  # the backbone downsamples 5 times: input sides must divide by it


class ConvBN(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, k: int = 3, s: int = 1, groups: int = 1):
        super().__init__(
            nn.Conv2d(c_in, c_out, k, s, k // 2, groups=groups, bias=False),
            nn.BatchNorm2d(c_out),
            nn.SiLU(inplace=True),
        )


class Residual(nn.Module):
    """Two 3x3 convs with a skip: the basic unit of every stage."""

    def __init__(self, c: int):
        super().__init__()
        self.a, self.b = ConvBN(c, c), ConvBN(c, c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.b(self.a(x))


def stage(c_in: int, c_out: int, blocks: int) -> nn.Sequential:
    return nn.Sequential(ConvBN(c_in, c_out, s=2), *[Residual(c_out) for _ in range(blocks)])


class DemoDetector(nn.Module):
    def __init__(self, num_classes: int = 3, width: tuple[int, ...] = (16, 24, 48, 64, 96), neck: int = 48):
        super().__init__()
        c1, c2, c3, c4, c5 = width
        self.num_classes = num_classes
        self.stem = ConvBN(3, c1, s=2)  # /2
        self.s2 = stage(c1, c2, 1)  # /4
        self.s3 = stage(c2, c3, 1)  # /8
        self.s4 = stage(c3, c4, 1)  # /16
        self.s5 = stage(c4, c5, 1)  # /32
        self.lat5, self.lat4, self.lat3 = (nn.Conv2d(c, neck, 1) for c in (c5, c4, c3))
        self.fuse4, self.fuse3 = ConvBN(neck, neck), ConvBN(neck, neck)
        self.head = nn.ModuleList(Head(neck, num_classes) for _ in STRIDES)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        p3 = self.s3(self.s2(self.stem(x)))
        p4 = self.s4(p3)
        p5 = self.s5(p4)
        n4 = self.fuse4(self.lat4(p4) + F.interpolate(self.lat5(p5), scale_factor=2.0, mode="nearest"))
        n3 = self.fuse3(self.lat3(p3) + F.interpolate(n4, scale_factor=2.0, mode="nearest"))
        return [n3, n4]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw outputs, anchors flattened level after level: box (B, A, 4), logits (B, A, C)."""
        boxes, logits = [], []
        for head, feat in zip(self.head, self.features(x)):
            b, c = head(feat)
            boxes.append(b.flatten(2).transpose(1, 2))
            logits.append(c.flatten(2).transpose(1, 2))
        return torch.cat(boxes, 1), torch.cat(logits, 1)

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """The exported output: (B, 4 + C, A), cx cy w h in input pixels, then scores."""
        raw_box, logits = self(x)
        points, strides = anchor_points(x.shape[-2:], x.device)
        return torch.cat([decode_cxcywh(raw_box, points, strides), logits.sigmoid()], -1).transpose(1, 2)


class Head(nn.Module):
    """One 3x3 conv shared by box and class branches, then 1x1 projections."""

    def __init__(self, c: int, num_classes: int):
        super().__init__()
        self.stem = ConvBN(c, c)
        self.box = nn.Conv2d(c, 4, 1)
        self.cls = nn.Conv2d(c, num_classes, 1)
        nn.init.constant_(self.cls.bias, -4.6)  # start at p ~ 0.01: most anchors are background

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.stem(x)
        return self.box(x), self.cls(x)


def anchor_points(hw: tuple[int, int] | torch.Size, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Cell centres (A, 2) in input pixels and their strides (A, 1), level after level."""
    points, strides = [], []
    for s in STRIDES:
        h, w = int(hw[0]) // s, int(hw[1]) // s
        ys, xs = torch.meshgrid(torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij")
        points.append((torch.stack([xs, ys], -1).reshape(-1, 2).float() + 0.5) * s)
        strides.append(torch.full((h * w, 1), float(s), device=device))
    return torch.cat(points), torch.cat(strides)


def decode_cxcywh(raw: torch.Tensor, points: torch.Tensor, strides: torch.Tensor) -> torch.Tensor:
    """Raw box -> cx, cy, w, h in input pixels.

    A centre offset rather than distances to the four sides: a scratch may be 1-2 px
    thin, so no cell centre lies inside its box, and side distances could not reach it.
    Sizes are regressed in log space because they span 1 px to a third of the image.
    """
    centre = points + raw[..., :2] * strides
    size = torch.exp(raw[..., 2:].clamp(-6.0, 6.0)) * strides
    return torch.cat([centre, size], -1)


def cxcywh_to_xyxy(b: torch.Tensor) -> torch.Tensor:
    return torch.cat([b[..., :2] - b[..., 2:] / 2, b[..., :2] + b[..., 2:] / 2], -1)


def count_flops(model: nn.Module, size: int) -> tuple[int, int]:
    """(multiply-accumulates x 2, parameters) of one forward pass at size x size."""
    macs = 0

    def hook(mod: nn.Conv2d, _inp, out: torch.Tensor) -> None:
        nonlocal macs
        k = mod.kernel_size[0] * mod.kernel_size[1] * mod.in_channels // mod.groups
        macs += out.numel() * k

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Conv2d)]
    with torch.no_grad():
        model.eval()(torch.zeros(1, 3, size, size))
    for h in handles:
        h.remove()
    return 2 * macs, sum(p.numel() for p in model.parameters())
