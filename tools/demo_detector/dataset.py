"""Labelled datasets rendered by the project's synthetic camera.

Owns the dataset recipe: a split is frames 0..F-1 of `SyntheticSource(seed).render(k)`
for each seed of a range, at the demo camera's 640x480, letterboxed by the pipeline's own
`Letterboxer`, so training sees exactly the tensors inference sees (RGB, /255, CHW, pad
114). Images are kept as uint8 CHW (the letterbox output times 255 is exact), boxes as
xyxy in model-input pixels.

Why many seeds: a source builds its belt, metal and noise textures once from its seed,
so every frame of one seed shares one texture instance. Trained on a single seed, the
model learnt that instance (it fired on streaks of another seed's brushed metal); a few
hundred seeds with a few dozen frames each teach it the texture *family* instead.

A split is a `Split` of arrays: `images` (N, 3, S, S) uint8, `boxes` (N, M, 4) float32
and `classes` (N, M) int64 padded with -1 to the most defects of any frame. Rendering is
spread over processes, one seed at a time: every frame depends only on (seed, k).
"""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from demo_detector import CLASSES

SOURCE_SIZE = (640, 480)  # the demo camera (configs/demo.yaml)


@dataclass(frozen=True)
class Recipe:
    first_seed: int
    seeds: int  # seeds first_seed .. first_seed + seeds - 1
    frames_per_seed: int
    size: int  # model input side
    defect_probability: float = 0.5
    max_defects: int = 3


@dataclass
class Split:
    images: np.ndarray
    boxes: np.ndarray
    classes: np.ndarray

    def __len__(self) -> int:
        return len(self.images)


def render_split(recipe: Recipe, workers: int | None = None) -> Split:
    seeds = [(recipe, recipe.first_seed + i) for i in range(recipe.seeds)]
    with ProcessPoolExecutor(workers or os.cpu_count() or 1) as pool:
        parts = list(pool.map(_render_seed, seeds))
    return _concat(parts)


def _render_seed(args: tuple[Recipe, int]) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray]]:
    from pipeline.parts.preprocessing.letterbox import Letterboxer
    from pipeline.parts.sources.synthetic import SyntheticSource

    recipe, seed = args
    w, h = SOURCE_SIZE
    source = SyntheticSource(w, h, 30.0, seed, recipe.defect_probability, recipe.max_defects, CLASSES, realtime=False)
    letterbox = Letterboxer((recipe.size, recipe.size))
    tensor = np.empty((3, recipe.size, recipe.size), np.float32)
    images = np.empty((recipe.frames_per_seed, 3, recipe.size, recipe.size), np.uint8)
    boxes, classes = [], []
    for k in range(recipe.frames_per_seed):
        frame = source.render(k)
        g = letterbox(frame.image, tensor)
        np.rint(tensor * 255.0, out=tensor)
        images[k] = tensor
        boxes.append(frame.truth.boxes * g.scale + np.array([g.pad_x, g.pad_y] * 2, np.float32))
        classes.append(frame.truth.class_ids)
    return images, boxes, classes


def _concat(parts: list) -> Split:
    images = np.concatenate([p[0] for p in parts])
    boxes = [b for p in parts for b in p[1]]
    classes = [c for p in parts for c in p[2]]
    m = max(1, max(len(c) for c in classes))
    padded_boxes = np.zeros((len(boxes), m, 4), np.float32)
    padded_classes = np.full((len(boxes), m), -1, np.int64)
    for i, (b, c) in enumerate(zip(boxes, classes)):
        padded_boxes[i, : len(c)] = b
        padded_classes[i, : len(c)] = c
    return Split(images, padded_boxes, padded_classes)


def load_or_render(recipe: Recipe, cache: Path) -> Split:
    """The split of `recipe`, from `cache` when rendered before (same recipe, same file)."""
    r = recipe
    path = cache / (f"s{r.size}_seeds{r.first_seed}+{r.seeds}_f{r.frames_per_seed}"
                    f"_p{r.defect_probability:g}_m{r.max_defects}.npz")
    if path.exists():
        with np.load(path) as data:
            return Split(data["images"], data["boxes"], data["classes"])
    split = render_split(recipe)
    cache.mkdir(parents=True, exist_ok=True)
    np.savez(path, images=split.images, boxes=split.boxes, classes=split.classes)
    return split
