"""The fused CUDA letterbox kernel reproduces the CPU Letterboxer within 1/255: BGR and
Mono8 frames, and Bayer mosaics against OpenCV's demosaic followed by the CPU letterbox."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from pipeline.core.messages import BayerPattern
from pipeline.parts.preprocessing.letterbox import BadFrame, Letterboxer

SIZES = [(1920, 1080), (640, 480), (640, 640), (333, 517), (100, 60), (1280, 1024), (17, 9)]
TOLERANCE = {np.float32: 1 / 255 + 1e-6, np.float16: 1 / 255 + 2e-3}  # fp16: one more rounding


@pytest.fixture(scope="module")
def gpu_letterboxer(device):
    from pipeline.parts.preprocessing.letterbox_kernel import GpuLetterboxer

    lb = GpuLetterboxer(device, (640, 640))
    yield lb
    lb.close()


def _run_both(device, gpu_letterboxer, image, dtype):
    from pipeline.parts.gpu.device_buffers import DeviceTensor

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
    from pipeline.parts.gpu.cuda import CudaError
    from pipeline.parts.gpu.device_buffers import DeviceTensor

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


# GenICam names -> OpenCV's bilinear demosaic, written out here: the reference the kernel
# must match is OpenCV's conversion followed by the CPU letterbox
BAYER_TO_BGR = {"BayerRG8": cv2.COLOR_BayerRGGB2BGR, "BayerBG8": cv2.COLOR_BayerBGGR2BGR,
                "BayerGR8": cv2.COLOR_BayerGRBG2BGR, "BayerGB8": cv2.COLOR_BayerGBRG2BGR}
BAYER_SIZES = [(1920, 1080), (1280, 1024), (640, 480), (333, 517), (17, 9)]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("pattern", sorted(BAYER_TO_BGR))
@pytest.mark.parametrize("size", BAYER_SIZES, ids=[f"{w}x{h}" for w, h in BAYER_SIZES])
def test_kernel_demosaics_bayer_like_opencv_then_the_cpu_letterbox(device, gpu_letterboxer, size, pattern, dtype):
    from pipeline.parts.gpu.device_buffers import DeviceTensor

    w, h = size
    mosaic = np.random.default_rng(w * 3 + h).integers(0, 256, (h, w), dtype=np.uint8)
    cpu_out = np.empty((3, 640, 640), dtype)
    cpu_geometry = Letterboxer((640, 640))(cv2.cvtColor(mosaic, BAYER_TO_BGR[pattern]), cpu_out)
    with device.active():
        slot = DeviceTensor.allocate((3, 640, 640), dtype)
        try:
            gpu_geometry = gpu_letterboxer(mosaic, slot, BayerPattern(pattern))
            gpu_out = slot.to_host()
        finally:
            slot.free()
    assert gpu_geometry == cpu_geometry
    diff = np.abs(gpu_out.astype(np.float32) - cpu_out.astype(np.float32))
    assert diff.max() <= TOLERANCE[dtype], f"max |gpu - cpu| = {diff.max() * 255:.2f}/255"


@pytest.mark.timeout(120)
@pytest.mark.parametrize("pattern", [None, *sorted(BAYER_TO_BGR)], ids=["Mono8", *sorted(BAYER_TO_BGR)])
def test_one_byte_frames_upload_from_their_page_locked_slot_without_a_wait(device, pattern):
    """A Mono8 or Bayer camera's frame slot (HxW, page-locked) is uploaded as it is and
    converted by the kernel: enqueued only, ordered by the batch's fence."""
    from pipeline.core.buffers import FramePool
    from pipeline.parts.preprocessing.gpu_preprocessing import GpuPreprocess

    gpu = GpuPreprocess.open(0, (416, 416), np.float32, 2)
    try:
        pool = FramePool((480, 640), 2, gpu.pinned, pinned=True)
        frame, tensor = pool.acquire(1.0), gpu.pool.acquire(1.0)
        frame.array[:] = np.random.default_rng(11).integers(0, 256, (480, 640), dtype=np.uint8)
        bayer = BayerPattern(pattern) if pattern else None
        assert gpu.pinned.owns(frame.array)
        gpu.transform(frame.array, tensor.array, bayer)
        fence = gpu.transform.flush()
        fence.synchronize()
        with device.active():
            got = tensor.array.to_host()
        image = cv2.cvtColor(frame.array, BAYER_TO_BGR[pattern]) if pattern else frame.array
        expected = np.empty((3, 416, 416), np.float32)
        Letterboxer((416, 416))(image, expected)
        assert np.abs(got - expected).max() <= TOLERANCE[np.float32]
        frame.release()
        tensor.release()
    finally:
        gpu.close()
