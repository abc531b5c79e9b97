"""Measures what a source pays per frame to hand it over, before and after frame slots
(figures for docs/GPU.md, "Host copies per source kind"), single-threaded OpenCV:

    python3 tools/measure_source_copies.py [--reps N]

GenICam at 1920x1080: "before" is what the source did until frame slots reached it
(PyGObject's `get_data()` copies the driver buffer into a new `bytes`, then a copy or
conversion into a new array); "slot" writes once from the driver's memory into a
preallocated slot (`into_slot`), in the CPU path's layout and, for Bayer, the GPU
path's raw one-byte layout. OpenCV: `retrieve()` into a new array against
`retrieve(image=slot)`, on a 1280x720 MJPG file written first. Prints p50 in ms.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from pipeline.parts.sources.pixel_formats import into_slot, to_pipeline_image

H, W = 1080, 1920


def p50_ms(reps: int, fn: Callable[..., object], *args: object) -> float:
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn(*args)
        times.append(time.perf_counter() - t0)
    return sorted(times)[reps // 2] * 1e3


def before(view: np.ndarray, fmt: str) -> np.ndarray:
    return to_pipeline_image(bytes(view), fmt, W, H)  # bytes(): what PyGObject's get_data() made


def genicam(reps: int) -> None:
    driver = np.random.default_rng(0).integers(0, 256, H * W * 3, dtype=np.uint8)  # stands for Aravis' buffer
    for fmt, channels in (("Mono8", 1), ("BayerRG8", 1), ("RGB8", 3)):
        view = driver[: H * W * channels]
        cpu_slot = np.empty((H, W) if fmt == "Mono8" else (H, W, 3), np.uint8)
        line = (f"genicam {fmt}: before {p50_ms(reps, before, view, fmt):.2f}, "
                f"slot {p50_ms(reps, into_slot, view, fmt, W, H, cpu_slot):.2f}")
        if fmt.startswith("Bayer"):
            raw_slot = np.empty((H, W), np.uint8)
            line += f", raw one-byte slot {p50_ms(reps, into_slot, view, fmt, W, H, raw_slot):.2f}"
        print(line)


def opencv(folder: Path) -> None:
    path = str(folder / "clip.avi")
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"MJPG"), 30, (1280, 720))
    base = np.random.default_rng(1).integers(0, 256, (720, 1280, 3), dtype=np.uint8)
    for i in range(60):
        writer.write(np.roll(base, 8 * i, axis=1))
    writer.release()
    for label, slot in (("retrieve()", None), ("retrieve(image=slot)", np.empty((720, 1280, 3), np.uint8))):
        capture, times = cv2.VideoCapture(path), []
        while capture.grab():
            t0 = time.perf_counter()
            capture.retrieve() if slot is None else capture.retrieve(image=slot)
            times.append(time.perf_counter() - t0)
        capture.release()
        print(f"opencv 1280x720 MJPG {label}: {sorted(times)[len(times) // 2] * 1e3:.2f} (p50 of {len(times)})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=200)
    args = parser.parse_args()
    cv2.setNumThreads(1)
    genicam(args.reps)
    with tempfile.TemporaryDirectory() as folder:
        opencv(Path(folder))


if __name__ == "__main__":
    main()
