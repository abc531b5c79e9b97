"""The fused CUDA letterbox kernel reproduces the CPU Letterboxer within 1/255."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.imaging.letterbox import BadFrame, Letterboxer

SIZES = [(1920, 1080), (640, 480), (640, 640), (333, 517), (100, 60), (1280, 1024), (17, 9)]
TOLERANCE = {np.float32: 1 / 255 + 1e-6, np.float16: 1 / 255 + 2e-3}  # fp16: one more rounding


@pytest.fixture(scope="module")
def gpu_letterboxer(device):
    from pipeline.gpu.letterbox_kernel import GpuLetterboxer

    lb = GpuLetterboxer(device, (640, 640))
    yield lb
    lb.close()


def _run_both(device, gpu_letterboxer, image, dtype):
    from pipeline.gpu.device_buffers import DeviceTensor

    cpu_out = np.empty((3, 640, 640), dtype)
    cpu_geometry = Letterboxer((640, 640))(image, cpu_out)
    with device.active():
        slot = DeviceTensor.allocate((3, 640, 640), dtype)
        try:
            gpu_geometry = gpu_letterboxer(image, slot)
            gpu_out = slot.to_host()
        finally:
            slot.free()
    return cpu_geometry, cpu_out, gpu_geometry, gpu_out


@pytest.mark.timeout(120)
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("gray", [False, True], ids=["bgr", "gray"])
@pytest.mark.parametrize("size", SIZES, ids=[f"{w}x{h}" for w, h in SIZES])
def test_kernel_matches_cpu_letterbox(device, gpu_letterboxer, size, gray, dtype):
    rng = np.random.default_rng(size[0] * 7 + size[1])
    w, h = size
    image = rng.integers(0, 256, (h, w) if gray else (h, w, 3), dtype=np.uint8)
    cpu_geometry, cpu_out, gpu_geometry, gpu_out = _run_both(device, gpu_letterboxer, image, dtype)
    assert gpu_geometry == cpu_geometry
    diff = np.abs(gpu_out.astype(np.float32) - cpu_out.astype(np.float32))
    assert diff.max() <= TOLERANCE[dtype], f"max |gpu - cpu| = {diff.max() * 255:.2f}/255"


@pytest.mark.timeout(60)
def test_kernel_refuses_a_bad_frame_and_a_wrong_slot(device, gpu_letterboxer):
    from pipeline.gpu.cuda import CudaError
    from pipeline.gpu.device_buffers import DeviceTensor

    with device.active():
        slot = DeviceTensor.allocate((3, 320, 320), np.float32)
    try:
        with pytest.raises(BadFrame):
            gpu_letterboxer(np.zeros((10, 10, 4), np.uint8), slot)
        with pytest.raises(CudaError, match=r"\(3, 640, 640\)"):
            gpu_letterboxer(np.zeros((10, 10, 3), np.uint8), slot)
    finally:
        with device.active():
            slot.free()
