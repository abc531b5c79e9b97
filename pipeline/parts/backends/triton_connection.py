"""One connection to a Triton Inference Server: the client, and our shared-memory regions.

Owns the `tritonclient` objects (gRPC or HTTP, imported only here and only when
`model.backend: triton` is chosen), the two system shared-memory regions of one backend
(input batch, output batch; created here, registered with the server, unregistered and
unlinked by `close()`), and turning the client's many failure types into
`BackendUnavailable` with reason `backend_unavailable` or `deadline`.

Buffer ownership: the regions belong to this object. `input_view(n)` lends a numpy view
of the input region that the caller fills before `infer`; the array `infer` returns is
copied out of the output region (the decide stage decodes it while the next request
runs, which overwrites the region). The server reads and writes the regions only
during an `infer` call.
"""

from __future__ import annotations

import itertools
import os
import socket
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline.parts.backends.backend_api import BackendDeadline, BackendUnavailable

_region_ids = itertools.count()  # region names are unique per process and backend


@dataclass(frozen=True)
class TensorSpec:
    """One tensor of the served model, as the server's metadata describes it."""

    name: str
    datatype: str  # Triton's name: "FP32", "FP16"
    dims: tuple[int, ...]  # per image, without the batch axis; -1 = variable

    @property
    def dtype(self) -> type:
        return np.float16 if self.datatype == "FP16" else np.float32

    def nbytes(self, batch: int) -> int | None:
        """Bytes of a batch, or None when a dim is variable (no fixed region then)."""
        if any(d < 0 for d in self.dims):
            return None
        return batch * int(np.prod(self.dims)) * np.dtype(self.dtype).itemsize


class TritonConnection:
    """The client of one thread, plus (optionally) the registered shm regions."""

    def __init__(self, url: str, protocol: str, model: str, version: str, connect_timeout_s: float):
        self.url, self.protocol, self.model, self.version = url, protocol, model, version
        self.connect_timeout_s = connect_timeout_s
        self._module = _client_module(protocol)
        self._client: Any = None
        self._client_thread: int | None = None
        self._regions: list[_Region] = []
        self.input: TensorSpec | None = None
        self.output: TensorSpec | None = None
        self.max_batch = 0

    # ---------------------------------------------------------------- the client
    def client(self) -> Any:
        """The client for the calling thread (the HTTP client's gevent pool may not be
        used from a second thread, so a new thread gets its own)."""
        me = threading.get_ident()
        if self._client is None or self._client_thread != me:
            self._drop_client()
            self._client = self._new_client()
            self._client_thread = me
        return self._client

    def _new_client(self) -> Any:
        if self.protocol == "http":
            return self._module.InferenceServerClient(
                self.url, connection_timeout=self.connect_timeout_s, network_timeout=self.connect_timeout_s)
        return self._module.InferenceServerClient(self.url)

    def reset(self) -> None:
        """Forget the client (and the server's view of our regions): the next call reconnects."""
        self._drop_client()

    def _drop_client(self) -> None:
        if self._client is not None:
            try:
                self._client.close()
            except Exception:  # noqa: BLE001 - a dead channel may fail to close; it is dropped anyway
                pass
        self._client, self._client_thread = None, None

    def _timeout_kw(self, timeout_s: float) -> dict[str, float]:
        # gRPC takes a per-call deadline; HTTP's is the client's network_timeout.
        return {"client_timeout": timeout_s} if self.protocol == "grpc" else {}

    def ready(self, timeout_s: float) -> None:
        """BackendUnavailable unless the server and our model are ready."""
        with translated("readiness check", timeout_s):
            kw = self._timeout_kw(timeout_s)
            if not self.client().is_server_ready(**kw):
                raise BackendUnavailable(f"triton {self.url}: server not ready")
            if not self.client().is_model_ready(self.model, self.version, **kw):
                raise BackendUnavailable(f"triton {self.url}: model {self.model!r} not ready")

    def describe(self, timeout_s: float) -> tuple[dict, dict]:
        """The model's metadata and config as plain dicts (ints for dims on both protocols)."""
        with translated("model metadata", timeout_s):
            kw = self._timeout_kw(timeout_s)
            metadata = self.client().get_model_metadata(self.model, self.version, as_json=True, **kw) \
                if self.protocol == "grpc" else self.client().get_model_metadata(self.model, self.version)
            config = self.client().get_model_config(self.model, self.version, as_json=True, **kw) \
                if self.protocol == "grpc" else self.client().get_model_config(self.model, self.version)
        return metadata, config.get("config", config)

    # ---------------------------------------------------------------- shared memory
    def open_regions(self, input_bytes: int, output_bytes: int | None) -> None:
        """Create and register the input region (and the output one when its size is fixed)."""
        from tritonclient.utils import shared_memory as shm

        ident = f"inspect_{os.getpid()}_{next(_region_ids)}"
        sizes = [("in", input_bytes)] + ([("out", output_bytes)] if output_bytes else [])
        for suffix, size in sizes:
            name = f"{ident}_{suffix}"
            self._regions.append(_Region(name, shm.create_shared_memory_region(name, "/" + name, size), size))
        self.register_regions(self.connect_timeout_s)

    def register_regions(self, timeout_s: float) -> None:
        """(Re-)register our regions: a restarted server has forgotten them."""
        with translated("shared memory registration", timeout_s):
            kw = self._timeout_kw(timeout_s)
            for region in self._regions:
                try:
                    self.client().unregister_system_shared_memory(region.name, **kw)
                except self._module_utils().InferenceServerException:
                    pass  # not registered (a fresh server): nothing to undo
                self.client().register_system_shared_memory(region.name, "/" + region.name, region.size, **kw)

    @property
    def uses_shared_memory(self) -> bool:
        return bool(self._regions)

    def input_view(self, batch: int) -> np.ndarray:
        """The first `batch` images of the input region as a writable (N, *dims) array."""
        assert self.input is not None
        return np.ndarray((batch, *self.input.dims), self.input.dtype, buffer=self._regions[0].handle._mpsm_handle.buf)

    # ---------------------------------------------------------------- inference
    def infer(self, batch: np.ndarray | None, n: int, timeout_s: float) -> np.ndarray:
        """Run `n` images: `batch` as plain tensors, or (batch None) what `input_view` holds."""
        assert self.input is not None and self.output is not None
        inp = self._module.InferInput(self.input.name, [n, *self.input.dims], self.input.datatype)
        if batch is None:
            inp.set_shared_memory(self._regions[0].name, self.input.nbytes(n) or 0)
        else:
            inp.set_data_from_numpy(batch)
        out = self._module.InferRequestedOutput(self.output.name)
        out_region = self._regions[1] if len(self._regions) > 1 else None
        if out_region is not None:
            out.set_shared_memory(out_region.name, self.output.nbytes(n) or 0)
        with translated("inference", timeout_s):
            result = self.client().infer(self.model, [inp], model_version=self.version, outputs=[out],
                                         **self._timeout_kw(timeout_s))
        if out_region is None:
            return result.as_numpy(self.output.name)
        shape = [int(d) for d in result.get_output(self.output.name)["shape"]] if self.protocol == "http" \
            else list(result.get_output(self.output.name).shape)
        return np.ndarray(shape, self.output.dtype, buffer=out_region.handle._mpsm_handle.buf).copy()

    def close(self) -> None:
        """Unregister and unlink our regions (best effort with a dead server), drop the client."""
        from tritonclient.utils import shared_memory as shm

        for region in self._regions:
            try:
                self.client().unregister_system_shared_memory(region.name, **self._timeout_kw(1.0))
            except Exception:  # noqa: BLE001 - a server that is gone has forgotten it already
                pass
            shm.destroy_shared_memory_region(region.handle)
        self._regions = []
        self._drop_client()

    def _module_utils(self) -> Any:
        from tritonclient import utils

        return utils


@dataclass
class _Region:
    name: str
    handle: Any  # tritonclient's SharedMemoryRegion
    size: int


def _client_module(protocol: str) -> Any:
    if protocol == "http":
        import tritonclient.http as module
    else:
        import tritonclient.grpc as module
    return module


class translated:
    """Turn whatever the client raises into BackendUnavailable, naming what failed."""

    def __init__(self, what: str, timeout_s: float):
        self.what, self.timeout_s = what, timeout_s

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type | None, exc: BaseException | None, tb: Any) -> bool:
        if exc is None or isinstance(exc, BackendUnavailable) or not isinstance(exc, Exception):
            return False
        text = f"{type(exc).__name__}: {exc}"[:240]
        if _is_timeout(exc):
            raise BackendDeadline(f"triton {self.what} took longer than {self.timeout_s * 1e3:.1f} ms ({text})") from exc
        raise BackendUnavailable(f"triton {self.what} failed ({text})") from exc


def _is_timeout(exc: BaseException) -> bool:
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return True
    try:
        from tritonclient.utils import InferenceServerException  # both clients raise this one type
    except ImportError:  # no client on this machine: nothing here was raised by it
        return False
    return isinstance(exc, InferenceServerException) and "DEADLINE_EXCEEDED" in str(exc.status())
