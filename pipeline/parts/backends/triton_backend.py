"""`InferenceBackend` on a Triton Inference Server (`model.backend: triton`).

Owns what the pipeline needs from a remote model: at start-up, waiting (up to
`model.triton.connect_timeout_s`) for the server and model to be ready, reading the
model's inputs, outputs, batch limit and class names from the server's metadata and
config and checking them like the local backends do (`pipeline.parts.modelfile.model_info`),
with whether the served graph ends in the candidate head (config parameters written by
`pipeline export-triton`: the K x 6 rows are decoded like a local backend's, the raw
output's recorded shape is what the class-count checks see);
per batch, one request whose timeout is the remaining budget of the batch's oldest part;
and the connection's life: after a failure the backend is DISCONNECTED, fails batches
at once (`backend_unavailable`) until its next reconnect attempt (exponential backoff,
`reconnect_initial_s`..`reconnect_max_s`), and on reconnecting re-registers its shared
memory, which a restarted server has forgotten. What crosses the boundary: host numpy
arrays in and out; the transport (`pipeline.parts.backends.triton_connection`) is system
shared memory when the server is on this host, plain tensors otherwise.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import numpy as np

from pipeline.config.model_triton import TritonConfig, TritonModelConfig
from pipeline.core.backoff import Backoff
from pipeline.parts.backends.backend_api import BackendDeadline, BackendUnavailable
from pipeline.parts.backends.triton_connection import TensorSpec, TritonConnection
from pipeline.parts.modelfile.candidate_head import CANDIDATE_FIELDS, K_KEY, raw_output
from pipeline.parts.modelfile.model_info import TRITON_TYPES, ModelError, ModelSignature, check_input, resolve_class_names

log = logging.getLogger(__name__)

LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "[::1]", "::1"}
_STARTUP_RETRY_S = 0.2


class LinkState(str, Enum):
    CONNECTED = "CONNECTED"
    DISCONNECTED = "DISCONNECTED"  # the last call failed; the next one reconnects first


class TritonBackend:
    """A model served by Triton, checked at start-up; see `InferenceBackend`."""

    accepts_device_input = False  # host arrays in

    def __init__(self, connection: TritonConnection, cfg: TritonConfig, served: ServedModel,
                 input_size: tuple[int, int], max_batch: int):
        self._conn: TritonConnection | None = connection
        self._cfg = cfg
        self.class_names = served.class_names
        self.emits_candidates = served.head_k is not None
        self.input_size = (int(input_size[0]), int(input_size[1]))
        assert connection.input is not None
        self.input_dtype = connection.input.dtype
        self.max_batch = int(max_batch)
        transport = "shm" if connection.uses_shared_memory else "tensors"
        self.name = f"triton:{cfg.protocol}://{cfg.url}/{cfg.model_name}({transport})"
        self.state = LinkState.CONNECTED
        self._backoff = Backoff(cfg.reconnect_initial_s, cfg.reconnect_max_s)
        self._next_attempt = 0.0
        self._stacked: np.ndarray | None = None  # plain-tensor batch buffer, allocated once

    @classmethod
    def from_config(cls, cfg: TritonModelConfig) -> TritonBackend:
        """Connect, read and check the served model; ModelError naming the server if unusable."""
        t = cfg.triton
        conn = TritonConnection(t.url, t.protocol, t.model_name, t.model_version, t.connect_timeout_s)
        try:
            metadata, model_config = _wait_ready(conn, t)
            served = _check_model(conn, metadata, model_config, cfg)
            if use_shared_memory(t):
                assert conn.input is not None and conn.output is not None
                conn.open_regions(conn.input.nbytes(cfg.max_batch) or 0, conn.output.nbytes(cfg.max_batch))
        except BackendUnavailable as exc:
            conn.close()
            raise ModelError(f"triton {t.url} model {t.model_name!r}: {exc}") from exc
        except ModelError:
            conn.close()
            raise
        return cls(conn, t, served, cfg.input_size, cfg.max_batch)

    # ---------------------------------------------------------------- inference
    def infer(self, batch: np.ndarray) -> np.ndarray:
        """Run (N, 3, h, w) with N <= max_batch; a copy of the raw output."""
        return np.array(self.infer_tensors_within(list(batch), self._cfg.connect_timeout_s))

    def infer_tensors(self, tensors: list[np.ndarray]) -> np.ndarray:
        return self.infer_tensors_within(tensors, self._cfg.connect_timeout_s)

    def infer_tensors_within(self, tensors: list[np.ndarray], timeout_s: float) -> np.ndarray:
        """One request for the slot arrays of a batch, given up after `timeout_s`; the
        output may be a view of the shared output region that the next call overwrites."""
        conn = self._open_connection()
        n = len(tensors)
        if not 1 <= n <= self.max_batch:
            raise ValueError(f"{n} inputs, expected 1..{self.max_batch}")
        timeout_s = max(timeout_s, self._cfg.min_request_timeout_ms / 1e3)
        if not self._ensure_connected(conn, timeout_s):
            raise BackendUnavailable(f"triton {self._cfg.url}: disconnected; next reconnect attempt in "
                                     f"{max(0.0, self._next_attempt - time.monotonic()):.2f} s")
        try:
            return conn.infer(self._fill(conn, tensors), n, timeout_s)
        except BackendUnavailable as exc:
            if not isinstance(exc, BackendDeadline):  # a slow server is still connected
                self._disconnected(conn, exc)
            raise

    def _fill(self, conn: TritonConnection, tensors: list[np.ndarray]) -> np.ndarray | None:
        """Write the images into the input region (None: it is sent from there) or a batch."""
        if conn.uses_shared_memory:
            view = conn.input_view(len(tensors))
            for i, tensor in enumerate(tensors):
                view[i] = tensor
            return None
        if len(tensors) == 1:
            return np.ascontiguousarray(tensors[0][None])
        if self._stacked is None:
            w, h = self.input_size
            self._stacked = np.empty((self.max_batch, 3, h, w), self.input_dtype)
        for i, tensor in enumerate(tensors):
            self._stacked[i] = tensor
        return self._stacked[: len(tensors)]

    # ---------------------------------------------------------------- the link
    def _open_connection(self) -> TritonConnection:
        if self._conn is None:
            raise RuntimeError(f"{self.name} backend is closed")
        return self._conn

    def _ensure_connected(self, conn: TritonConnection, timeout_s: float) -> bool:
        """True when connected, or reconnected now; False while waiting for the next attempt."""
        if self.state is LinkState.CONNECTED:
            return True
        if time.monotonic() < self._next_attempt:
            return False
        try:
            conn.reset()
            conn.ready(timeout_s)
            if conn.uses_shared_memory:
                conn.register_regions(timeout_s)
        except BackendUnavailable as exc:
            self._disconnected(conn, exc)
            raise
        log.warning("triton %s: reconnected", self._cfg.url)
        self.state = LinkState.CONNECTED
        self._backoff.reset()
        return True

    def _disconnected(self, conn: TritonConnection, exc: Exception) -> None:
        if self.state is LinkState.CONNECTED:
            log.warning("triton %s: connection lost (%s); reconnecting in the background of each batch",
                        self._cfg.url, exc)
        self.state = LinkState.DISCONNECTED
        self._next_attempt = time.monotonic() + self._backoff.next_delay()  # the first loss waits ~initial_s

    def warmup(self, runs: int) -> None:
        """Batches of 1 and of max_batch, so the server has planned both before frames come."""
        w, h = self.input_size
        for _ in range(runs):
            for n in sorted({1, self.max_batch}):
                self.infer_tensors([np.zeros((3, h, w), self.input_dtype)] * n)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def use_shared_memory(cfg: TritonConfig) -> bool:
    """System shared memory only works when the server maps our /dev/shm: the same host."""
    if cfg.shared_memory != "auto":
        return cfg.shared_memory == "system"
    host = cfg.url.rsplit(":", 1)[0]
    return host in LOOPBACK_HOSTS


def _wait_ready(conn: TritonConnection, cfg: TritonConfig) -> tuple[dict, dict]:
    """Poll until the server and model are ready (a server may still be loading)."""
    deadline = time.monotonic() + cfg.connect_timeout_s
    while True:
        remaining = deadline - time.monotonic()
        try:
            conn.ready(max(remaining, 0.05))
            return conn.describe(max(remaining, 0.05))
        except BackendUnavailable as exc:
            if time.monotonic() + _STARTUP_RETRY_S > deadline:
                raise BackendUnavailable(f"not ready within {cfg.connect_timeout_s:g} s ({exc})") from None
            conn.reset()
            time.sleep(_STARTUP_RETRY_S)  # start-up only: no frames flow yet


@dataclass(frozen=True)
class ServedModel:
    """What the server's metadata and config say about the model, once checked."""

    class_names: tuple[str, ...]
    head_k: int | None  # K of the candidate head the graph ends in; None: the raw output


def _check_model(conn: TritonConnection, metadata: dict, config: dict, cfg: TritonModelConfig) -> ServedModel:
    """Read the tensors into `conn`; ModelError if they do not fit the config."""
    where = Path(f"triton://{cfg.triton.url}/{cfg.triton.model_name}")
    inputs, outputs = metadata.get("inputs", []), metadata.get("outputs", [])
    if len(inputs) != 1 or not outputs:
        raise ModelError(f"{where}: model has inputs {[i['name'] for i in inputs]} and outputs "
                         f"{[o['name'] for o in outputs]}, expected one image input and a detection output")
    server_batch = int(config.get("max_batch_size", 0))
    conn.input, conn.output = _spec(inputs[0], server_batch), _spec(outputs[0], server_batch)
    conn.max_batch = server_batch
    if inputs[0]["datatype"] not in TRITON_TYPES:
        raise ModelError(f"{where}: input {inputs[0]['name']!r} is {inputs[0]['datatype']}, expected FP32 or FP16")
    if cfg.max_batch > max(server_batch, 1):
        raise ModelError(f"{where}: the server's max_batch_size is {server_batch}, but model.max_batch is "
                         f"{cfg.max_batch}; lower model.max_batch or raise max_batch_size in config.pbtxt")
    params = {k: str(v.get("string_value", "")) for k, v in config.get("parameters", {}).items()}
    head_k = _head_k(where, params, outputs[0])
    # With the head, the checks see the raw output it reads (unknown for a plan: no count check).
    raw = raw_output(params) if head_k is not None else None
    out_name, out_shape = raw or (outputs[0]["name"], ("batch", None, None) if head_k else _shape(outputs[0], server_batch))
    sig = ModelSignature(where, inputs[0]["name"], _shape(inputs[0], server_batch),
                         TRITON_TYPES[inputs[0]["datatype"]], out_name, tuple(out_shape))
    check_input(sig, cfg.input_size, 1)
    names = params.get("names")
    served = ServedModel(resolve_class_names(sig, cfg.class_names, {"names": names} if names else {}), head_k)
    if head_k is not None and cfg.max_candidates != head_k:
        log.info("%s: the served graph ends in the candidate head with K=%d (model.max_candidates %s applies to "
                 "raw outputs only)", where, head_k, cfg.max_candidates)
    return served


def _head_k(where: Path, params: dict[str, str], output: dict) -> int | None:
    """The K of the candidate head the served graph ends in (None: none); ModelError if
    the output is not the (K, 6) rows the parameter promises."""
    if K_KEY not in params:
        return None
    dims = tuple(int(d) for d in output["shape"])  # with the batch axis, Triton's or the model's own
    try:
        k = int(params[K_KEY])
    except ValueError:
        k = -1
    if dims[1:] != (k, CANDIDATE_FIELDS) or k < 1:
        raise ModelError(f"{where}: parameter {K_KEY} is {params[K_KEY]!r}, but output {output['name']!r} is "
                         f"{list(output['shape'])}, not (batch, K, {CANDIDATE_FIELDS}); re-export the model with "
                         f"`pipeline export-triton`")
    return k


def _shape(tensor: dict, server_batch: int) -> tuple[int | str, ...]:
    """The full shape with the batch axis ("batch" when the server batches)."""
    dims = tuple(int(d) for d in tensor["shape"])
    if server_batch > 0:
        dims = dims[1:]  # metadata includes the -1 batch axis when the model batches
        return ("batch", *(d if d >= 0 else None for d in dims))
    return tuple(d if d >= 0 else None for d in dims)


def _spec(tensor: dict, server_batch: int) -> TensorSpec:
    dims = tuple(int(d) for d in tensor["shape"])
    # Requests always carry a batch axis: Triton's own one, or the model's first dim.
    return TensorSpec(tensor["name"], tensor["datatype"], dims[1:])
