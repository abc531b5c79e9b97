"""`InferenceBackend` on TensorRT 10.x / 11.x, GPU-resident like the ONNX Runtime CUDA one.

Owns loading a plan built by `pipeline build-engine` (checking its sidecar first: a plan
from another TensorRT, GPU or ONNX file is refused, naming the field, or rebuilt, per
`model.engine_mismatch`), and running it with the name-based tensor API:
`set_input_shape`, `set_tensor_address`, `execute_async_v3` on the backend's stream.
Buffers are sized once from the optimization profile's max shape; the output is the
candidate head's (N, K, 6) when the plan was built with one (model.max_candidates, checked
against the sidecar), else the raw (N, 4+C, A).

What crosses the boundary: `infer_tensors` takes the input slots' `DeviceTensor`s
(batch 1 is bound in place, zero-copy; batch N is gathered by one kernel launch) and
returns a pinned host view of the output from a ring of buffers (`OutputRing`), valid
until the next call, or until released when the caller took it with `lend_output`. Everything is
allocated in `from_config` and freed in `close()`. Written to the API lists of
TensorRT 10.13 and 11.4 and checked statically (tests/test_trt_static.py); it has not
run on a GPU here, because TensorRT cannot be installed on our machines.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pycuda.driver as cuda
import tensorrt as trt

from pipeline.config.model_tensorrt import TensorRTConfig
from pipeline.core.buffers import OutputRing
from pipeline.core.messages import TensorSlot
from pipeline.parts.engines.sidecar import (
    EngineSidecar,
    SidecarError,
    default_engine_path,
    mismatches,
    sha256_file,
    sidecar_path,
)
from pipeline.parts.gpu.cuda import CudaDevice, CudaError, cuda_call
from pipeline.parts.gpu.device_buffers import DeviceTensor, PinnedAllocator
from pipeline.parts.gpu.slot_gather import SlotGather
from pipeline.parts.modelfile.model_info import ModelError, ModelSignature, check_input, onnx_type

log = logging.getLogger(__name__)
_LOGGER = trt.Logger(trt.Logger.WARNING)


class TensorRTBackend:
    accepts_device_input = True

    def __init__(self, engine, device: CudaDevice, sidecar: EngineSidecar, input_size: tuple[int, int],
                 max_batch: int, class_names: tuple[str, ...]):
        self._engine = engine
        self.device = device
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        self._input = next(n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT)
        self._output = next(n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT)
        check_input(_signature(engine, self._input, self._output, sidecar), input_size, max_batch)  # as every backend
        self.name = f"tensorrt:{trt.__version__}:{sidecar.precision}"
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.input_dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(self._input))).type
        self.class_names = class_names
        self.max_batch = max_batch
        # the sidecar records the K the plan was built with (checked against the config)
        self.emits_candidates = sidecar.build.get("max_candidates") is not None
        w, h = self.input_size
        with device.active():
            self._context = engine.create_execution_context()
            self._stream = cuda_call("creating the inference stream", cuda.Stream)
            _require(self._context.set_input_shape(self._input, (max_batch, 3, h, w)), "set_input_shape", self._input)
            out_shape = tuple(self._context.get_tensor_shape(self._output))
            out_dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(self._output)))
            self._batch = DeviceTensor.allocate((max_batch, 3, h, w), self.input_dtype)
            self._out = DeviceTensor.allocate(out_shape, out_dtype)
        self._gather = SlotGather(device, self._batch, self._stream)
        self._pinned = PinnedAllocator(device)  # the output ring's page-locked buffers (see onnxruntime_cuda)
        self._outputs = OutputRing(out_shape, out_dtype, allocate=self._pinned)
        _require(self._context.set_tensor_address(self._output, self._out.ptr), "set_tensor_address", self._output)

    @classmethod
    def from_config(cls, cfg: TensorRTConfig) -> TensorRTBackend:
        engine_path = Path(cfg.engine_path or default_engine_path(Path(cfg.path)))
        try:
            device = CudaDevice.open(cfg.device_id)
        except CudaError as exc:
            raise ModelError(f"{engine_path}: {exc}") from None
        try:
            sidecar = checked_sidecar(cfg, engine_path, device)
            engine = deserialize(engine_path)
            if cfg.max_batch > sidecar.max_batch:
                raise ModelError(f"{engine_path}: model.max_batch {cfg.max_batch} exceeds the engine's "
                                 f"profile max batch {sidecar.max_batch}; rebuild with --max-batch {cfg.max_batch}")
            names = tuple(cfg.class_names or sidecar.class_names)
            return cls(engine, device, sidecar, cfg.input_size, cfg.max_batch, names)
        except BaseException:
            device.close()
            raise

    # ------------------------------------------------------------------ running
    def infer_tensors(self, tensors: Sequence[DeviceTensor]) -> np.ndarray:
        n = len(tensors)
        if not 1 <= n <= self.max_batch:
            raise ValueError(f"{n} inputs, expected 1..{self.max_batch}")
        with self.device.active():
            if n == 1:
                ptr = tensors[0].ptr  # zero-copy: the kernel's slot is the engine's input
            else:
                self._gather(tensors)  # one kernel launch on the stream (SlotGather)
                ptr = self._batch.ptr
            return self._execute(ptr, n)

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """A host batch (warm-up, tests): one H2D copy, then as `infer_tensors`."""
        n = batch.shape[0]
        with self.device.active():
            cuda_call("copying a batch to the GPU", cuda.memcpy_htod_async, self._batch.allocation,
                      np.ascontiguousarray(batch, self.input_dtype), self._stream)
            return self._execute(self._batch.ptr, n)

    def _execute(self, input_ptr: int, n: int) -> np.ndarray:
        w, h = self.input_size
        _require(self._context.set_input_shape(self._input, (n, 3, h, w)), "set_input_shape", self._input)
        _require(self._context.set_tensor_address(self._input, input_ptr), "set_tensor_address", self._input)
        _require(self._context.execute_async_v3(self._stream.handle), "execute_async_v3", "the batch")
        host = self._outputs.current()[:n]  # rows 0..n-1 of the output buffer: a contiguous prefix
        cuda_call("copying the engine output to the host", cuda.memcpy_dtoh_async, host, self._out.ptr, self._stream)
        cuda_call("running the engine", self._stream.synchronize)
        return host

    def lend_output(self) -> TensorSlot | None:
        """The last run's host output buffer, the caller's until it releases it (decide does)."""
        return self._outputs.lend()

    def warmup(self, runs: int) -> None:
        w, h = self.input_size
        for _ in range(runs):
            for n in sorted({1, self.max_batch}):
                self.infer(np.zeros((n, 3, h, w), self.input_dtype))

    def close(self) -> None:
        if self._engine is None:
            return
        with self.device.active():
            self._context = None
            self._engine = None
            self._batch.free()
            self._out.free()
        self._pinned.close()  # the output ring's buffers: the stages have stopped
        self.device.close()


def deserialize(engine_path: Path):
    runtime = trt.Runtime(_LOGGER)
    engine = runtime.deserialize_cuda_engine(engine_path.read_bytes())
    if engine is None:  # another TensorRT version or compute capability: TensorRT logs which
        raise ModelError(f"{engine_path}: TensorRT {trt.__version__} could not load this plan; "
                         f"rebuild it with `pipeline build-engine`")
    return engine


def checked_sidecar(cfg: TensorRTConfig, engine_path: Path, device: CudaDevice) -> EngineSidecar:
    """The engine's sidecar once it matches this machine and model; rebuilt or refused otherwise."""
    current = {"tensorrt_version": trt.__version__, "gpu_name": device.name,
               "compute_capability": device.compute_capability_text}
    if Path(cfg.path).is_file():
        current["onnx_sha256"] = sha256_file(Path(cfg.path))
    try:
        sidecar = EngineSidecar.read(sidecar_path(engine_path))
        problems = mismatches(sidecar, current) if engine_path.is_file() else [f"{engine_path} not found"]
    except SidecarError as exc:
        sidecar, problems = None, [str(exc)]
    if sidecar is not None and sidecar.build.get("max_candidates") != cfg.max_candidates:
        # The plan's output is the candidate head's (N, K, 6) or the raw tensor: it must be
        # what the decoder expects (an engine built before the head has no such field).
        problems.append(f"engine built with max_candidates {sidecar.build.get('max_candidates')}, "
                        f"model.max_candidates is {cfg.max_candidates}")
    if not problems and sidecar is not None:
        return sidecar
    if cfg.engine_mismatch == "refuse":
        raise ModelError(f"{engine_path}: engine does not match: {'; '.join(problems)}; rebuild it with "
                         f"`pipeline build-engine {cfg.path}` or set model.engine_mismatch: rebuild")
    log.warning("%s: rebuilding the engine: %s", engine_path, "; ".join(problems))
    return rebuild(cfg, engine_path, device, sidecar)


def rebuild(cfg: TensorRTConfig, engine_path: Path, device: CudaDevice, old: EngineSidecar | None) -> EngineSidecar:
    from pipeline.parts.engines.builder import BuildOptions, EngineBuildError, build_engine

    if not Path(cfg.path).is_file():
        raise ModelError(f"{cfg.path}: cannot rebuild {engine_path}: the ONNX model is not there")
    build = dict(old.build) if old is not None else {}
    options = BuildOptions(input_size=tuple(cfg.input_size), max_batch=max(cfg.max_batch, old.max_batch if old else 1),
                           opt_batch=cfg.max_batch, precision=old.precision if old else "fp32",
                           workspace_mib=int(build.get("workspace_mib", 2048)), max_candidates=cfg.max_candidates)
    names = tuple(cfg.class_names or (old.class_names if old else ()))
    gpu = (device.name, device.compute_capability_text)
    try:
        with device.active():
            return build_engine(Path(cfg.path), engine_path, options, names, gpu, report=log.info)
    except EngineBuildError as exc:
        raise ModelError(str(exc)) from None


def _require(ok: bool, call: str, tensor: str) -> None:
    """TensorRT reports these failures only by returning False (and a log line): raise."""
    if not ok:
        raise CudaError(f"TensorRT {call} failed for {tensor} (see the TensorRT log above)")


def _signature(engine, input_name: str, output_name: str, sidecar: EngineSidecar) -> ModelSignature:
    """The engine's input and output in the form the other backends check (-1: dynamic)."""
    dtype = engine.get_tensor_dtype(input_name)
    return ModelSignature(Path(sidecar.onnx_path), input_name, tuple(engine.get_tensor_shape(input_name)),
                          _onnx_type(dtype), output_name,
                          tuple(engine.get_tensor_shape(output_name)))


def _onnx_type(dtype) -> str:
    """A TensorRT dtype as the ONNX type string `check_input` reads; one numpy has no name for
    (bf16, fp8) as TensorRT prints it, so the error names it."""
    try:
        return onnx_type(trt.nptype(dtype))
    except TypeError:
        return str(dtype)
