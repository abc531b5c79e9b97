"""Fixtures of the GPU tests: every test here is marked `gpu` (CI deselects them with
`-m 'not gpu'`) and is skipped cleanly where pycuda, onnxruntime-gpu or a GPU is missing."""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/gpu/" in str(item.fspath).replace("\\", "/"):
            item.add_marker(pytest.mark.gpu)


@pytest.fixture(scope="session")
def device():
    pytest.importorskip("pycuda.driver")
    from pipeline.parts.gpu.cuda import CudaDevice, device_count

    if device_count() == 0:
        pytest.skip("no CUDA device")
    dev = CudaDevice.open(0)
    yield dev
    dev.close()


@pytest.fixture(scope="session")
def cuda_provider():
    ort = pytest.importorskip("onnxruntime")
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip("onnxruntime has no CUDAExecutionProvider (install onnxruntime-gpu)")
