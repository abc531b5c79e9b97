"""GPU preprocess: the fused letterbox kernel (`letterbox.cu`) and its host side.

Owns compiling the kernel (once per process and device; pycuda keeps the compiled cubin
in its on-disk cache, so nvcc runs only the first time a machine sees this source) and
`GpuLetterboxer`, the preprocess transform of the GPU path: `(image, out) -> Geometry`,
the same shape as the CPU `Letterboxer`, whose convention it reproduces within 1/255.

What crosses the boundary: a host uint8 frame (HxWx3 BGR, HxW gray, or an HxW raw Bayer
mosaic with its `BayerPattern`, demosaiced by the kernel as it resamples: bilinear,
OpenCV's own rounding and borders) and a `DeviceTensor` (3, h, w) float32/float16 slot go in; the geometry comes back, and the
slot will hold the model input once the transform's stream has run the work.

Per frame, from a page-locked frame slot (one the `PinnedAllocator` made): one
asynchronous H2D copy straight from the slot (`enqueue_upload`, which keeps the
interpreter lock) and one kernel launch on the transform's own stream; nothing waits.
`flush()` then records a `CudaFence` (an event from a ring)
after the batch's work and returns it: the infer stream waits on it, and the slots are
released only after it completed (see device_buffers). A frame in ordinary pageable
memory (a source that could not use its slot) takes the old path: a copy into a
page-locked staging buffer and a stream synchronise, since that staging buffer is
reused by the next frame. Staging buffers are allocated once per frame size and freed
by `close()`. A GpuLetterboxer is not thread-safe: one per preprocess thread.
"""

from __future__ import annotations

import threading
from importlib import resources

import numpy as np
import pycuda.driver as cuda
from pycuda.compiler import SourceModule

from pipeline.core.messages import BayerPattern, Geometry
from pipeline.parts.gpu.cuda import CudaDevice, CudaError, CudaFence, cuda_call, enqueue_upload
from pipeline.parts.gpu.device_buffers import DeviceTensor, PinnedAllocator, pinned_array
from pipeline.parts.preprocessing.letterbox import check_frame, letterbox_geometry

BLOCK = (32, 8, 1)
_ARG_TYPES = "PiiiiPiiiiiifff"  # see the kernel's signature
# the kernel's `bayer` argument: where red sits in the 2x2 tile (x + 2*y); -1: not a mosaic
_RED_AT = {BayerPattern.RG: 0, BayerPattern.GR: 1, BayerPattern.GB: 2, BayerPattern.BG: 3}
_modules: dict[int, SourceModule] = {}
_compile_lock = threading.Lock()


def kernel_source() -> str:
    return resources.files("pipeline.parts.preprocessing").joinpath("letterbox.cu").read_text()


def compiled_kernels(device: CudaDevice) -> dict[np.dtype, cuda.Function]:
    """The prepared float32/float16 kernels for `device` (compiled on first use)."""
    with _compile_lock:
        module = _modules.get(device.device_id)
        if module is None:
            with device.active():
                module = cuda_call("compiling letterbox.cu (needs nvcc on first use)",
                                   SourceModule, kernel_source(), no_extern_c=True, options=["-O3"])
            _modules[device.device_id] = module
    kernels = {np.dtype(np.float32): module.get_function("letterbox_f32"),
               np.dtype(np.float16): module.get_function("letterbox_f16")}
    for kernel in kernels.values():
        kernel.prepare(_ARG_TYPES)
    return kernels


class GpuLetterboxer:
    """Letterbox frames straight into device slots; see the module docstring."""

    def __init__(self, device: CudaDevice, input_size: tuple[int, int], pad_value: int = 114,
                 pinned: PinnedAllocator | None = None, fences: int = 64):
        self.device = device
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.pad_value = int(pad_value)
        self.pinned = pinned  # frames in its arrays are uploaded without a staging copy or a wait
        self._kernels = compiled_kernels(device)
        with device.active():
            self.stream = cuda_call("creating the preprocess stream", cuda.Stream)
            # a ring: a fence is recorded again only after `fences` more batches, long after
            # its slots were released (there are fewer slots than that in flight)
            self._fences = [CudaFence(device) for _ in range(fences)]
        self._next_fence = 0
        self._staging: dict[tuple[int, ...], tuple[np.ndarray, DeviceTensor]] = {}

    def flush(self) -> CudaFence:
        """A fence after everything enqueued so far (one per batch of frames)."""
        fence = self._fences[self._next_fence]
        self._next_fence = (self._next_fence + 1) % len(self._fences)
        with self.device.active():
            return fence.record(self.stream)

    def geometry(self, src_w: int, src_h: int) -> Geometry:
        return letterbox_geometry(src_w, src_h, *self.input_size)[0]

    def __call__(self, image: np.ndarray, out: DeviceTensor, bayer: BayerPattern | None = None) -> Geometry:
        """Write the letterboxed frame into the device slot `out` and return its geometry."""
        check_frame(image, bayer)
        kernel = self._kernel_for(out)
        src_h, src_w = image.shape[:2]
        geometry, nw, nh = letterbox_geometry(src_w, src_h, *self.input_size)
        w, h = self.input_size
        grid = ((w + BLOCK[0] - 1) // BLOCK[0], (h + BLOCK[1] - 1) // BLOCK[1])
        channels = 1 if image.ndim == 2 else 3
        direct = self.pinned is not None and self.pinned.owns(image)
        with self.device.active():
            pinned, frame = self._staging_for(image.shape)
            if direct:
                enqueue_upload(frame.ptr, image, self.stream, "copying a frame to the GPU")
            else:
                np.copyto(pinned, image)  # pageable memory: the async copy needs page-locked
                cuda_call("copying a frame to the GPU", cuda.memcpy_htod_async, frame.allocation, pinned, self.stream)
            cuda_call("launching the letterbox kernel", kernel.prepared_async_call, grid, BLOCK, self.stream,
                      frame.ptr, src_w, src_h, channels, -1 if bayer is None else _RED_AT[bayer], out.ptr, w, h, nw, nh,
                      int(geometry.pad_x), int(geometry.pad_y), src_w / nw, src_h / nh, float(self.pad_value))
            if not direct:  # the staging buffer is reused by the next frame
                cuda_call("running the letterbox kernel", self.stream.synchronize)
        return geometry

    def _kernel_for(self, out: object) -> cuda.Function:
        w, h = self.input_size
        if not isinstance(out, DeviceTensor) or out.shape != (3, h, w) or out.dtype not in self._kernels:
            got = f"{out.shape} {out.dtype}" if isinstance(out, DeviceTensor) else type(out).__name__
            raise CudaError(f"out must be a (3, {h}, {w}) float32/float16 DeviceTensor, got {got}")
        return self._kernels[out.dtype]

    def _staging_for(self, shape: tuple[int, ...]) -> tuple[np.ndarray, DeviceTensor]:
        staging = self._staging.get(shape)
        if staging is None:  # once per frame size, never per frame
            staging = self._staging[shape] = (pinned_array(shape, np.uint8), DeviceTensor.allocate(shape, np.uint8))
        return staging

    def close(self) -> None:
        """Free the staging buffers; idempotent."""
        staging, self._staging = self._staging, {}
        if staging:
            with self.device.active():
                for pinned, frame in staging.values():
                    frame.free()
                    pinned.base.free()
