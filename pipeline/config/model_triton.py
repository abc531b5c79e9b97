"""`model:` for `backend: triton`: a model served by a Triton Inference Server.

Owns `model.triton` (where the server is and how to talk to it; docs/SCALING.md). The
model's inputs, outputs, batch limit and class names come from the server's metadata, so
`model.path` is optional here: it only records what the served model was exported from.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from pipeline.config.model_common import BackendKind, ModelSettings
from pipeline.config.reconnect import FirstWait, LongestWait, ReconnectSettings


class TritonConfig(ReconnectSettings):
    """Where a Triton Inference Server serves the model, and how to talk to it."""

    url: str = Field("127.0.0.1:8001", pattern=r"^[A-Za-z0-9_.\-\[\]:]+:[0-9]{1,5}$")  # host:port, no scheme
    protocol: Literal["grpc", "http"] = "grpc"
    model_name: str = Field(..., min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_.\-]+$")
    model_version: str = Field("", pattern=r"^[0-9]*$")  # "": the server's policy picks
    # auto: system shared memory when the server is on this host (loopback url), else plain tensors.
    # cuda (same host and GPU) is documented, not implemented: docs/SCALING.md.
    shared_memory: Literal["auto", "system", "none"] = "auto"
    connect_timeout_s: float = Field(10.0, gt=0, le=600)  # at start-up: server ready and model READY
    # Per request: the part's remaining budget, but never less than this (a request with
    # 0.1 ms left would only add load to a server that cannot answer in time anyway).
    min_request_timeout_ms: float = Field(1.0, gt=0, le=60_000)
    # Sooner and shorter than a camera's: a lost server stops every camera's inspection,
    # and a reconnect attempt is one cheap readiness call (a camera's is an open that
    # blocks for up to open_timeout_ms), so it is worth retrying more often.
    reconnect_initial_s: FirstWait = 0.1
    reconnect_max_s: LongestWait = 2.0


class TritonModelConfig(ModelSettings):
    """The served model; `triton` says where (required)."""

    backend: Literal[BackendKind.TRITON] = BackendKind.TRITON
    triton: TritonConfig
    path: Path | None = None  # what the served model was exported from; never opened

    @property
    def location(self) -> str:
        version = f"/versions/{self.triton.model_version}" if self.triton.model_version else ""
        return f"triton://{self.triton.url}/{self.triton.model_name}{version}"
