"""The hot path's own driver calls (pipeline.parts.gpu.cuda): the copies that keep the
interpreter lock move exactly the bytes pycuda's copies move, a failed one names what was
being done (with the driver's name for the error), and the bounded poll returns once the copy it waits for has landed."""

from __future__ import annotations

import numpy as np
import pytest


def test_upload_and_download_round_trip_a_pinned_array(device):
    import pycuda.driver as cuda

    from pipeline.parts.gpu.cuda import await_short, enqueue_download, enqueue_upload
    from pipeline.parts.gpu.device_buffers import DeviceTensor, pinned_array

    shape = (1080, 1920, 3)
    with device.active():
        src, back = pinned_array(shape, np.uint8), pinned_array(shape, np.uint8)
        src[...] = np.random.default_rng(3).integers(0, 256, shape, dtype=np.uint8)
        back[...] = 0
        buffer = DeviceTensor.allocate(shape, np.uint8)
        stream, event = cuda.Stream(), cuda.Event()
        try:
            enqueue_upload(buffer.ptr, src, stream, "test upload")
            enqueue_download(back, buffer.ptr, stream, "test download")
            await_short(event, stream, "test wait")
            assert np.array_equal(back, src)
            assert np.array_equal(buffer.to_host(), src)  # pycuda's own copy sees the same bytes
        finally:
            buffer.free()


def test_a_failed_driver_call_names_what_was_being_done_and_the_error(device):
    # A status from the driver, not a real failure: a copy to a bad address can leave the
    # context broken for the rest of the session.
    from pipeline.parts.gpu.cuda import CudaError, _checked

    with pytest.raises(CudaError, match=r"copying a frame to the GPU: CUDA_ERROR_INVALID_VALUE \(1\)"):
        _checked(1, "copying a frame to the GPU")
    _checked(0, "nothing failed")
