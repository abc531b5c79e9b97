"""Shapes for the synthetic source: the parts (washer, plate) and the defect geometry
(scratch, spot, crack), in pixels of the reference resolution times a scale.

Owns only geometry: what a part's outline is, where a point lies on it, what a defect's
polylines or polygon look like. Colours, textures and compositing stay in `synthetic`.
"""

from __future__ import annotations

import math
from typing import Callable

import cv2
import numpy as np

# --------------------------------------------------------------------------- parts


class Washer:
    def __init__(self, rng: np.random.Generator, size: int):
        self.c = np.array([size / 2, size / 2])
        self.r_out = size / 2 * rng.uniform(0.80, 0.96)
        self.r_in = self.r_out * rng.uniform(0.26, 0.38)

    def draw(self, img: np.ndarray, color, thickness: int = -1) -> None:
        center = (round(self.c[0]), round(self.c[1]))
        cv2.circle(img, center, round(self.r_out), color, thickness, cv2.LINE_AA)
        inner = color if thickness > 0 else 0
        cv2.circle(img, center, round(self.r_in), inner, thickness, cv2.LINE_AA)

    def sample_point(self, rng: np.random.Generator) -> np.ndarray:
        a, r = rng.uniform(0, 2 * math.pi), rng.uniform(self.r_in, self.r_out)
        return self.c + r * np.array([math.cos(a), math.sin(a)])

    def contains(self, pts: np.ndarray, margin: float) -> bool:
        r = np.hypot(*(pts - self.c).T)
        return bool(np.all((r >= self.r_in + margin) & (r <= self.r_out - margin)))


class Plate:
    def __init__(self, rng: np.random.Generator, size: int):
        self.c = np.array([size / 2, size / 2])
        half_diag, aspect = size / 2 * rng.uniform(0.84, 0.97), rng.uniform(0.5, 0.75)
        self.hw = half_diag / math.hypot(1, aspect)
        self.hh = aspect * self.hw
        self.corner = self.hh * rng.uniform(0.05, 0.3)
        a = math.radians(rng.uniform(-30, 30))
        self.rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
        n_holes = rng.choice([0, 2, 4])
        hx, hy = self.hw - 0.3 * self.hh, 0.6 * self.hh
        self.holes = np.array([[-hx, hy], [hx, -hy], [hx, hy], [-hx, -hy]])[:n_holes]
        self.hole_r = 0.13 * self.hh

    def _outline(self) -> np.ndarray:
        # rounded rectangle: four quarter arcs around the inner corners, then rotated
        ix, iy = self.hw - self.corner, self.hh - self.corner
        t = np.linspace(0, math.pi / 2, 8)
        arcs = [np.c_[sx * (ix + self.corner * np.cos(t)), sy * (iy + self.corner * np.sin(t))][::o]
                for sx, sy, o in ((1, 1, 1), (-1, 1, -1), (-1, -1, 1), (1, -1, -1))]
        return self._to_patch(np.concatenate(arcs))

    def _to_patch(self, local: np.ndarray) -> np.ndarray:
        return local @ self.rot.T + self.c

    def draw(self, img: np.ndarray, color, thickness: int = -1) -> None:
        poly = np.round(self._outline() * 16).astype(np.int32)  # 4 fractional bits
        if thickness < 0:
            cv2.fillPoly(img, [poly], color, cv2.LINE_AA, 4)
        else:
            cv2.polylines(img, [poly], True, color, thickness, cv2.LINE_AA, 4)
        for h in self._to_patch(self.holes):
            cv2.circle(img, (round(h[0]), round(h[1])), round(self.hole_r), 0 if thickness < 0 else color,
                       thickness, cv2.LINE_AA)

    def sample_point(self, rng: np.random.Generator) -> np.ndarray:
        return self._to_patch(rng.uniform(-1, 1, 2) * [self.hw, self.hh])

    def contains(self, pts: np.ndarray, margin: float) -> bool:
        q = (pts - self.c) @ self.rot  # back to part-local coordinates
        # inset of a rounded rectangle by `margin`: a smaller core grown by what is left of the radius
        inset = max(self.corner, margin)
        beyond = np.clip(np.abs(q) - [self.hw - inset, self.hh - inset], 0, None)
        if np.any(np.hypot(*beyond.T) > max(self.corner - margin, 0)):
            return False
        return all(np.all(np.hypot(*(q - h).T) >= self.hole_r + margin) for h in self.holes)


# --------------------------------------------------------------------------- defects
# Each shape function returns polylines (scratch, crack) or one polygon (spot) around the
# origin, in pixels of the reference resolution times `scale`.


def _scratch(rng: np.random.Generator, scale: float) -> list[np.ndarray]:
    length, a = rng.uniform(25, 120) * scale, rng.uniform(0, math.pi)
    t = np.linspace(-0.5, 0.5, 4)
    bow = rng.normal(0, 0.02, 4) * length  # straight-ish: a slight wobble only
    d, n = np.array([math.cos(a), math.sin(a)]), np.array([-math.sin(a), math.cos(a)])
    return [np.outer(t * length, d) + np.outer(bow, n)]


def _jagged(rng: np.random.Generator, start: np.ndarray, angle: float, length: float) -> np.ndarray:
    steps = max(4, int(length / 5))
    turns = angle + rng.normal(0, 0.75, steps)  # jagged around a main direction
    seg = rng.uniform(0.6, 1.4, steps) * length / steps
    return start + np.cumsum(np.c_[seg * np.cos(turns), seg * np.sin(turns)], axis=0)


def _crack(rng: np.random.Generator, scale: float) -> list[np.ndarray]:
    length, a = rng.uniform(20, 95) * scale, rng.uniform(0, 2 * math.pi)
    main = _jagged(rng, np.zeros(2), a, length)
    main = np.vstack([np.zeros(2), main]) - main[-1] / 2
    paths = [main]
    for _ in range(rng.integers(1, 3)):
        at = main[rng.integers(1, len(main) - 1)]
        side = rng.choice([-1, 1]) * rng.uniform(0.5, 1.1)
        paths.append(np.vstack([at, _jagged(rng, at, a + side, length * rng.uniform(0.25, 0.5))]))
    return paths


def _spot(rng: np.random.Generator, scale: float) -> list[np.ndarray]:
    r, squash, a = rng.uniform(6, 19) * scale, rng.uniform(0.6, 1.0), rng.uniform(0, math.pi)
    t = np.linspace(0, 2 * math.pi, 20, endpoint=False)
    radii = r * rng.uniform(0.85, 1.1, 20)  # a slightly lumpy ellipse
    x, y = radii * np.cos(t), squash * radii * np.sin(t)
    return [np.c_[x * math.cos(a) - y * math.sin(a), x * math.sin(a) + y * math.cos(a)]]


# kind -> (shape, filled, thickness in ref px, BGR colours to choose from, strength)
DEFECTS: dict[str, tuple[Callable, bool, tuple[int, int], tuple, float]] = {
    "scratch": (_scratch, False, (1, 2.4), ((235, 235, 240), (40, 40, 45)), 0.9),
    "spot": (_spot, True, (0, 0), ((30, 38, 52), (45, 50, 60)), 0.85),
    "crack": (_crack, False, (1, 3), ((12, 12, 16),), 1.0),
}
SUPPORTED_CLASSES = tuple(DEFECTS)


def densify(path: np.ndarray, step: float) -> np.ndarray:
    """Points every `step` px along a polyline, for checking it lies on the part."""
    seg = np.diff(path, axis=0)
    n = np.maximum(1, (np.hypot(*seg.T) / step).astype(int))
    which = np.repeat(np.arange(len(seg)), n)
    frac = np.arange(len(which)) - np.repeat(np.cumsum(n) - n, n)
    return np.vstack([path[which] + seg[which] * (frac / n[which])[:, None], path[-1:]])
