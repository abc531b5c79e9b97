"""Builds a TensorRT plan from an ONNX model, for TensorRT 10.x and 11.x alike.

Owns the portable build recipe (see ../shared/trt/MIGRATION.md): a strongly typed
network (precision comes from the ONNX graph: `pipeline convert` makes the FP16 and
Q/DQ INT8 models; no precision builder flags, which 11.x removed), one optimization
profile over the batch axis (min/opt/max), a workspace limit, an optional hardware
compatibility level, a timing cache kept beside the engine and keyed on GPU and
TensorRT version, and progress reported through `IProgressMonitor`. The network is
parsed from the model with the candidate head appended in memory
(`pipeline.parts.modelfile.candidate_head`, K = `max_candidates`), so the plan answers
(N, K, 6) like the ONNX Runtime sessions; `max_candidates` None builds the raw graph.

What crosses the boundary: an ONNX path and `BuildOptions` go in; the plan file and its
sidecar JSON (`pipeline.parts.engines.sidecar`) come out. TensorRT is imported here and in
the TensorRT backend only.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import tensorrt as trt

from pipeline.config.model_tensorrt import TensorRTConfig
from pipeline.core.errors import PipelineError
from pipeline.parts.engines.sidecar import (
    EngineSidecar,
    TensorSpec,
    sha256_file,
    sidecar_path,
)
from pipeline.parts.modelfile.candidate_head import TENSORRT_TOPK_LIMIT, headed_model_bytes
from pipeline.parts.modelfile.model_info import ModelError

TRT_MAJOR = int(trt.__version__.split(".")[0])
HARDWARE_COMPATIBILITY = {
    "none": trt.HardwareCompatibilityLevel.NONE,
    "ampere_plus": trt.HardwareCompatibilityLevel.AMPERE_PLUS,
    "same_compute_capability": trt.HardwareCompatibilityLevel.SAME_COMPUTE_CAPABILITY,
}


class EngineBuildError(PipelineError):
    """The engine could not be built; the message says which step failed and why."""


@dataclass(frozen=True)
class BuildOptions:
    input_size: tuple[int, int] = (640, 640)  # width, height
    min_batch: int = 1
    opt_batch: int = 1
    max_batch: int = 1
    workspace_mib: int = 2048
    optimization_level: int = 3
    hardware_compatibility: str = "none"
    timing_cache: Path | None = None  # None: <engine dir>/timing-<gpu>-trt<version>.cache
    precision: str = "fp32"  # what the ONNX graph holds; recorded in the sidecar
    max_candidates: int | None = 3000  # K of the candidate head (model.max_candidates); None: no head


class ProgressPrinter(trt.IProgressMonitor):
    """Reports each build phase and step through `report(line)`; never cancels."""

    def __init__(self, report: Callable[[str], None]):
        trt.IProgressMonitor.__init__(self)
        self._report = report
        self._depth: dict[str, int] = {}

    def phase_start(self, phase_name, parent_phase, num_steps):
        self._depth[phase_name] = self._depth.get(parent_phase, -1) + 1 if parent_phase else 0
        self._report(f"{'  ' * self._depth[phase_name]}{phase_name} ({num_steps} steps)")

    def step_complete(self, phase_name, step):
        return True  # keep building

    def phase_finish(self, phase_name):
        self._depth.pop(phase_name, None)


def build_engine(onnx_path: Path, engine_path: Path, options: BuildOptions, class_names: tuple[str, ...],
                 gpu: tuple[str, str], report: Callable[[str], None] = print) -> EngineSidecar:
    """Build `onnx_path` into `engine_path` (+ sidecar) for the GPU named by `gpu` (name, cc)."""
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(_network_flags())
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(_model_bytes(onnx_path, options, class_names), str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EngineBuildError(f"{onnx_path}: TensorRT's ONNX parser refused the model: {errors}")
    if network.num_inputs != 1:
        raise EngineBuildError(f"{onnx_path}: expected one image input, the network has {network.num_inputs}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, options.workspace_mib << 20)
    config.builder_optimization_level = options.optimization_level
    config.hardware_compatibility_level = HARDWARE_COMPATIBILITY[options.hardware_compatibility]
    config.progress_monitor = ProgressPrinter(report)
    profile = _add_profile(builder, config, network.get_input(0).name, options)
    cache_path = options.timing_cache or engine_path.parent / f"timing-{gpu[0].replace(' ', '_')}-trt{trt.__version__}.cache"
    _load_timing_cache(config, cache_path)
    started = time.monotonic()
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise EngineBuildError(f"{onnx_path}: TensorRT could not build an engine (see the log lines above)")
    engine_path.parent.mkdir(parents=True, exist_ok=True)
    engine_path.write_bytes(memoryview(plan))
    cache_path.write_bytes(memoryview(config.get_timing_cache().serialize()))
    report(f"built {engine_path} in {time.monotonic() - started:.1f} s")
    sidecar = _sidecar(onnx_path, network, options, profile, class_names, gpu, str(cache_path))
    sidecar.write(sidecar_path(engine_path))
    return sidecar


def _model_bytes(onnx_path: Path, options: BuildOptions, class_names: tuple[str, ...]) -> bytes:
    """The ONNX file's bytes, with the candidate head appended unless options.max_candidates is None."""
    if options.max_candidates is None:
        return onnx_path.read_bytes()
    cfg = TensorRTConfig(path=onnx_path, input_size=options.input_size, max_batch=options.max_batch,
                      class_names=tuple(class_names) or None, max_candidates=options.max_candidates)
    try:
        headed = headed_model_bytes(cfg)
    except ModelError as exc:
        raise EngineBuildError(str(exc)) from None
    if headed.candidates > TENSORRT_TOPK_LIMIT:
        raise EngineBuildError(f"{onnx_path}: max_candidates {headed.candidates} exceeds TensorRT's TopK limit "
                               f"of {TENSORRT_TOPK_LIMIT}; use --max-candidates {TENSORRT_TOPK_LIMIT} or less")
    return headed.model_bytes


def _network_flags() -> int:
    # 10.x: strongly typed is opt-in and is what makes a converted ONNX keep its precision.
    # 11.x: always strongly typed; the flag is deprecated and ignored there, so it is never
    # passed, and it is looked up by name so that 11.x code never refers to it.
    if TRT_MAJOR >= 11:
        return 0
    return 1 << int(getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED"))  # noqa: B009 (see above)


def _add_profile(builder, config, input_name: str, options: BuildOptions) -> dict:
    w, h = options.input_size
    shapes = {key: (batch, 3, h, w) for key, batch in
              (("min", options.min_batch), ("opt", options.opt_batch), ("max", options.max_batch))}
    profile = builder.create_optimization_profile()
    profile.set_shape(input_name, shapes["min"], shapes["opt"], shapes["max"])
    config.add_optimization_profile(profile)
    return {"input": input_name, **{k: list(v) for k, v in shapes.items()}}


def _load_timing_cache(config, cache_path: Path) -> None:
    blob = cache_path.read_bytes() if cache_path.is_file() else b""
    cache = config.create_timing_cache(blob)
    config.set_timing_cache(cache, ignore_mismatch=False)


def _sidecar(onnx_path: Path, network, options: BuildOptions, profile: dict, class_names: tuple[str, ...],
             gpu: tuple[str, str], cache_path: str) -> EngineSidecar:
    def spec(tensor) -> TensorSpec:
        return TensorSpec(tensor.name, tuple(int(d) for d in tensor.shape), str(tensor.dtype).split(".")[-1])

    build = {k: v for k, v in asdict(options).items() if k not in ("precision", "timing_cache")}
    build["timing_cache"] = cache_path
    return EngineSidecar(
        tensorrt_version=trt.__version__, gpu_name=gpu[0], compute_capability=gpu[1],
        onnx_path=str(onnx_path), onnx_sha256=sha256_file(onnx_path), precision=options.precision,
        profile=profile, inputs=tuple(spec(network.get_input(i)) for i in range(network.num_inputs)),
        outputs=tuple(spec(network.get_output(i)) for i in range(network.num_outputs)),
        class_names=tuple(class_names), build=build)
