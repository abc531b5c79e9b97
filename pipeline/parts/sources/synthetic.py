"""A synthetic conveyor belt: one rendered metal part per frame, with random defects.

Owns the renderer and the ground truth of every frame it renders. What crosses the
boundary: `SourceFrame`s (BGR uint8, width x height of the camera) carrying a
`GroundTruth` with tight xyxy boxes in source pixels and class ids indexing `classes`.

Frame k of seed s is always the same image and truth (a numpy Generator seeded with
(s, k)), so `render(k)` gives random access for dataset generation and `read()` simply
renders 0, 1, 2, ... Textures are precomputed once per source; a frame is a few shifted
views of them plus OpenCV drawing (about 1-2 ms at 640x480 on one core).

Defect sizes at the reference resolution (shorter image side 480 px; they scale with it),
as the longer side of the tight box (the thin side of a line may be only 2-4 px):
  scratch  long thin straight-ish bright or dark line   ~20..120 px
  spot     roundish dark stain with a soft edge          ~12..42 px
  crack    jagged dark polyline with 1-2 branches        ~14..100 px
A box covers the pixels the defect changed by at least a quarter of its strength; every
defect lies on the part, at least 3 px inside its edges and holes, never on another.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from pipeline.config.cameras import CameraConfig
from pipeline.config.sources import SyntheticSourceConfig
from pipeline.core.messages import GroundTruth
from pipeline.parts.sources.frame_source import SourceFrame
from pipeline.parts.sources.pacing import Pacer
from pipeline.parts.sources.synthetic_shapes import DEFECTS, SUPPORTED_CLASSES, Plate, Washer, densify

_TEXTURE_KEY = 2**64 - 1  # second seed word of the texture generator; frames use k


# --------------------------------------------------------------------------- textures


def _streaks(rng: np.random.Generator, rows: int, cols: int, along: int) -> np.ndarray:
    """Zero-mean float32 noise smeared along the rows: brushed metal / belt grain."""
    noise = rng.normal(0, 1, (rows, cols)).astype(np.float32)
    # blurred three copies wide and cut from the middle: the texture wraps without a seam
    sm = cv2.blur(np.tile(noise, 3), (max(3, along), 1))[:, cols:2 * cols]
    return sm / (sm.std() + 1e-6)


class _Textures:
    """Everything that does not change from frame to frame, built once per source."""

    def __init__(self, rng: np.random.Generator, width: int, height: int, unit: float, part_size: int):
        self.rail = max(2, round(0.045 * height))
        self.period = max(32, round(256 * unit))
        self.belt = self._belt(rng, width, height - 2 * self.rail, unit)
        self.rails = self._rails(rng, width, unit)
        sigma = 3.0  # sensor noise, split into saturating add/subtract tiles (no int16 pass)
        noise = rng.normal(0, sigma, (height + 32, width + 32, 3))
        self.noise_up = np.clip(noise, 0, 255).astype(np.uint8)
        self.noise_down = np.clip(-noise, 0, 255).astype(np.uint8)
        self.tile = math.ceil(part_size * 1.5)  # covers the part at any rotation and shift
        brushed = 128 + 20 * _streaks(rng, self.tile, self.tile, round(60 * unit))
        self.linear = np.clip(brushed + rng.normal(0, 3, brushed.shape), 0, 255).astype(np.uint8)
        self.concentric = self._concentric(rng, part_size, unit)

    def _belt(self, rng: np.random.Generator, width: int, rows: int, unit: float) -> np.ndarray:
        p = self.period
        # built three periods wide and cut from the middle, so the tile wraps seamlessly
        grain = cv2.GaussianBlur(np.tile(rng.normal(0, 1, (rows, p)).astype(np.float32), 3), (3, 3), 0)
        grain = cv2.blur(grain, (max(3, round(7 * unit)), 1))[:, p:2 * p]  # belt motion blur
        x = np.arange(p) / p
        y = np.linspace(0, 2 * math.pi, rows)[:, None]
        low = sum(rng.uniform(2, 5) * np.cos(2 * math.pi * m * x + rng.uniform(0, 6)) * np.cos(y * m + rng.uniform(0, 6))
                  for m in (1, 2, 3))
        ribs = np.where((np.arange(p) % (p // 8)) < max(1, round(2 * unit)), -9.0, 0.0)
        gray = np.clip(58 + 8 * grain + low + ribs, 0, 255)
        bgr = np.dstack([gray * 1.06, gray, gray * 0.93]).clip(0, 255).astype(np.uint8)
        return np.ascontiguousarray(np.tile(bgr, (1, width // p + 2, 1))[:, : width + p])

    def _rails(self, rng: np.random.Generator, width: int, unit: float) -> tuple[np.ndarray, np.ndarray]:
        steel = 150 + 12 * _streaks(rng, self.rail, width, round(80 * unit))
        steel[-max(1, round(2 * unit)):] = 25  # the gap between rail and belt
        top = cv2.cvtColor(np.clip(steel, 0, 255).astype(np.uint8), cv2.COLOR_GRAY2BGR)
        return top, np.ascontiguousarray(top[::-1])

    def _concentric(self, rng: np.random.Generator, size: int, unit: float) -> np.ndarray:
        # streaks along the angle axis of a polar image become turned rings (lathe marks)
        polar = 128 + 18 * _streaks(rng, size // 2, 720, round(90 * unit)).T
        polar = np.clip(polar + rng.normal(0, 3, polar.shape), 0, 255).astype(np.uint8)
        flags = cv2.WARP_INVERSE_MAP | cv2.WARP_POLAR_LINEAR | cv2.INTER_LINEAR
        return cv2.warpPolar(polar, (size, size), (size / 2, size / 2), size / 2, flags)


class SyntheticSource:
    """A `FrameSource` rendering a belt of parts; `render(k)` gives any frame directly."""

    copies_into_slot = False  # frames are rendered straight into the lent slot

    def __init__(self, width: int = 640, height: int = 480, fps: float = 30.0, seed: int = 0,
                 defect_probability: float = 0.3, max_defects: int = 2,
                 classes: tuple[str, ...] = SUPPORTED_CLASSES, realtime: bool = True):
        unknown = [c for c in classes if c not in DEFECTS]
        if unknown or not classes:
            raise ValueError(f"unknown defect classes {unknown or '(none given)'}; supported: {list(SUPPORTED_CLASSES)}")
        if width < 16 or height < 16 or fps <= 0 or not 0 <= defect_probability <= 1 or max_defects < 1:
            raise ValueError("need width, height >= 16, fps > 0, 0 <= defect_probability <= 1, max_defects >= 1")
        self.width, self.height, self.classes = width, height, tuple(classes)
        self._seed = seed % 2**64  # SeedSequence wants non-negative words
        self._p, self._max_defects = defect_probability, max_defects
        self._unit = min(width, height) / 480  # all sizes are in px at the reference resolution
        self._size = round(0.72 * min(width, height))  # side of the square patch holding the part
        self._tex = _Textures(np.random.default_rng((self._seed, _TEXTURE_KEY)), width, height, self._unit, self._size)
        self._pacer = Pacer(fps, realtime)
        self._next = 0

    @classmethod
    def from_config(cls, camera: CameraConfig) -> "SyntheticSource":
        src = camera.source
        if not isinstance(src, SyntheticSourceConfig):
            raise TypeError(f"camera {camera.id}: expected a synthetic source, got {src.kind!r}")
        return cls(camera.width, camera.height, camera.fps, src.seed, src.defect_probability,
                   src.max_defects, src.classes, src.realtime)

    def open(self) -> None:
        self._pacer.reset()

    def close(self) -> None:
        pass

    def read(self, timeout_s: float) -> SourceFrame | None:
        return self.read_into(None, timeout_s)

    def read_into(self, out: np.ndarray | None, timeout_s: float) -> SourceFrame | None:
        """The next frame, rendered into the lent slot `out` (a `SlotSource`)."""
        if not self._pacer.wait(timeout_s):
            return None
        frame = self.render(self._next, out)
        self._next += 1
        return frame

    def render(self, k: int, out: np.ndarray | None = None) -> SourceFrame:
        """Frame `k` of this seed: always the same image and truth, drawn into `out` when
        it is a (height, width, 3) uint8 buffer, else into a new array."""
        rng = np.random.default_rng((self._seed, k))
        tex, s = self._tex, self._size
        shape = (self.height, self.width, 3)
        fits = out is not None and out.shape == shape and out.dtype == np.uint8
        frame = out if fits else np.empty(shape, np.uint8)
        self._draw_belt(frame, k)
        part = (Washer if rng.random() < 0.5 else Plate)(rng, s)
        x0 = int(rng.integers(0, self.width - s + 1))
        y0 = int(rng.integers(tex.rail, self.height - tex.rail - s + 1))
        roi = frame[y0:y0 + s, x0:x0 + s]
        mask = np.zeros((s, s), np.uint8)
        part.draw(mask, 255)
        mask = cv2.threshold(mask, 127, 255, cv2.THRESH_BINARY)[1]
        self._cast_shadow(roi, mask)
        surface = self._surface(part, rng)
        # defects draw from their own generator: frame k without defects is the same image
        defect_rng = np.random.default_rng((self._seed, k, 1))
        boxes, class_ids = self._add_defects(surface, part, mask, defect_rng)
        cv2.copyTo(surface, mask, roi)
        cv2.GaussianBlur(roi, (3, 3), 0.7, dst=roi)  # lens softness; the belt is blurred already
        self._finish(frame, rng)
        boxes = np.asarray(boxes, np.float32).reshape(-1, 4) + np.array([x0, y0, x0, y0], np.float32)
        truth = GroundTruth(boxes, np.asarray(class_ids, np.int64), self.classes)
        return SourceFrame(frame, truth=truth)

    # ----------------------------------------------------------------- render steps

    def _draw_belt(self, frame: np.ndarray, k: int) -> None:
        tex, rail = self._tex, self._tex.rail
        offset = (-k * round(0.37 * tex.period)) % tex.period  # the belt runs left to right
        frame[rail:self.height - rail] = tex.belt[:, offset:offset + self.width]
        frame[:rail], frame[self.height - rail:] = tex.rails

    def _cast_shadow(self, roi: np.ndarray, mask: np.ndarray) -> None:
        s, q = self._size, 4  # blur at a quarter resolution: a soft shadow costs little
        small = cv2.resize(mask, (s // q, s // q), interpolation=cv2.INTER_AREA)
        shift = max(1, round(8 * self._unit / q))
        small = np.pad(small, ((shift, 0), (shift, 0)))[: s // q, : s // q]
        small = cv2.GaussianBlur(small, (0, 0), max(1.0, 6 * self._unit / q))
        shade = cv2.resize(255 - (small // 2), (s, s), interpolation=cv2.INTER_LINEAR)
        cv2.multiply(roi, cv2.cvtColor(shade, cv2.COLOR_GRAY2BGR), dst=roi, scale=1 / 255)

    def _surface(self, part, rng: np.random.Generator) -> np.ndarray:
        s, tex = self._size, self._tex
        if isinstance(part, Plate):
            angle = math.degrees(math.atan2(part.rot[1, 0], part.rot[0, 0]))
            m = cv2.getRotationMatrix2D((tex.tile / 2, tex.tile / 2), -angle, 1.0)
            m[:, 2] -= (tex.tile - s) / 2 + rng.uniform(-0.05, 0.05, 2) * s
            metal = cv2.warpAffine(tex.linear, m, (s, s), flags=cv2.INTER_LINEAR)
        else:
            metal = cv2.flip(tex.concentric, int(rng.integers(-1, 2)))
        # lighting is smooth: computed on a 16x16 grid, applied with saturating uint8 ops
        gain, spec = (cv2.resize(c, (s, s), interpolation=cv2.INTER_LINEAR) for c in self._lighting(part, rng))
        gray = cv2.add(cv2.multiply(metal, gain, scale=1 / 128), spec)
        tint = (1.0, 1.0, 1.0) if rng.random() < 0.8 else (0.62, 0.86, 1.05)  # steel or brass
        bgr = cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR)
        cv2.multiply(bgr, tuple(t * rng.uniform(0.96, 1.04) for t in tint) + (0,), dst=bgr)
        part.draw(bgr, (55, 55, 60), max(1, round(2 * self._unit)))  # darker bevelled edges
        return bgr

    @staticmethod
    def _lighting(part, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Coarse gain (128 = 1.0) and highlight maps: a shading gradient and a specular band."""
        y, x = np.mgrid[-1:1:16j, -1:1:16j].astype(np.float32)
        gain = rng.uniform(0.8, 1.15) + rng.normal(0, 0.12) * x + rng.normal(0, 0.12) * y
        a = rng.uniform(0, math.pi)
        if isinstance(part, Washer):  # turned rings light up in a bow tie through the centre
            spec = np.abs(np.cos(np.arctan2(y, x) - a)) ** 6
        else:
            spec = np.exp(-(((x * math.cos(a) + y * math.sin(a)) - rng.uniform(-0.8, 0.8)) / rng.uniform(0.15, 0.5)) ** 2)
        return np.clip(gain * 128, 0, 255).astype(np.uint8), (spec * rng.uniform(20, 90)).astype(np.uint8)

    def _add_defects(self, surface: np.ndarray, part, mask: np.ndarray, rng: np.random.Generator):
        boxes: list[tuple[int, int, int, int]] = []
        class_ids: list[int] = []
        if rng.random() >= self._p:
            return boxes, class_ids
        for _ in range(int(rng.integers(1, self._max_defects + 1))):
            cid = int(rng.integers(len(self.classes)))
            box = self._place_defect(surface, part, mask, self.classes[cid], rng, boxes)
            if box is not None:
                boxes.append(box)
                class_ids.append(cid)
        return boxes, class_ids

    def _place_defect(self, surface, part, mask, kind: str, rng: np.random.Generator, taken: list):
        shape, filled, (t_lo, t_hi), colours, strength = DEFECTS[kind]
        thickness = 0 if filled else max(1, round(rng.uniform(t_lo, t_hi) * self._unit))
        gap = 4 * self._unit
        for attempt in range(24):  # shrink a little after each miss so it always fits somewhere
            paths = shape(rng, self._unit * max(0.6, 0.93 ** attempt))
            pts = np.vstack(paths)
            lo, hi = pts.min(0), pts.max(0)
            shift = part.sample_point(rng) - (lo + hi) / 2
            paths, lo, hi = [p + shift for p in paths], lo + shift, hi + shift
            on_part = np.vstack([densify(np.vstack([p, p[:1]]) if filled else p, 2.0) for p in paths])
            if not part.contains(on_part, thickness + 3 * self._unit):
                continue
            if any(lo[0] < b[2] + gap and b[0] < hi[0] + gap and lo[1] < b[3] + gap and b[1] < hi[1] + gap for b in taken):
                continue
            colour = colours[int(rng.integers(len(colours)))]
            return self._draw_defect(surface, mask, paths, filled, thickness, (colour, *colours), strength)
        return None

    def _draw_defect(self, surface, mask, paths, filled, thickness, colours, strength):
        """Blend one defect (first colour preferred) into the surface; its box covers the pixels
        changed by at least a quarter of its strength."""
        pts = np.vstack(paths)
        pad = thickness + 6 * self._unit + 2  # room for the line width and the soft edge
        x0, y0 = np.maximum(0, np.floor(pts.min(0) - pad)).astype(int)
        x1, y1 = np.minimum(self._size, np.ceil(pts.max(0) + pad)).astype(int)
        dm = np.zeros((y1 - y0, x1 - x0), np.uint8)
        fixed = [np.round((p - (x0, y0)) * 16).astype(np.int32) for p in paths]  # 4 fractional bits
        if filled:
            cv2.fillPoly(dm, fixed, 255, cv2.LINE_AA, 4)
            dm = cv2.GaussianBlur(dm, (0, 0), 1.5 * self._unit)  # stains have soft edges
        else:
            cv2.polylines(dm, fixed[:1], False, 255, thickness, cv2.LINE_AA, 4)
            cv2.polylines(dm, fixed[1:], False, 255, max(1, thickness - 1), cv2.LINE_AA, 4)
        cv2.bitwise_and(dm, mask[y0:y1, x0:x1], dst=dm)  # never off the part surface
        win = surface[y0:y1, x0:x1]
        # a bright scratch on a bright highlight would be invisible yet labelled: keep the
        # chosen colour only when it stands out, else take the most contrasting one
        local = np.asarray(cv2.mean(win, dm)[:3])
        contrast = [np.abs(np.asarray(c) - local).mean() for c in colours]
        colour = colours[0] if contrast[0] >= 60 else colours[int(np.argmax(contrast))]
        alpha = dm[..., None].astype(np.float32) * (strength / 255)
        win[:] = (win * (1 - alpha) + np.asarray(colour, np.float32) * alpha).astype(np.uint8)
        bx, by, bw, bh = cv2.boundingRect((dm >= 64).astype(np.uint8))
        return None if bw == 0 else (x0 + bx, y0 + by, x0 + bx + bw, y0 + by + bh)

    def _finish(self, frame: np.ndarray, rng: np.random.Generator) -> None:
        """Exposure jitter, lens softness and sensor noise over the whole frame."""
        cv2.convertScaleAbs(frame, dst=frame, alpha=rng.uniform(0.9, 1.1), beta=rng.uniform(-8, 8))
        ox, oy = rng.integers(0, 32, 2)
        h, w = self.height, self.width
        cv2.add(frame, self._tex.noise_up[oy:oy + h, ox:ox + w], dst=frame)
        ox, oy = rng.integers(0, 32, 2)
        cv2.subtract(frame, self._tex.noise_down[oy:oy + h, ox:ox + w], dst=frame)
