"""`pipeline build-engine MODEL.onnx`: build a TensorRT plan and its sidecar JSON.

Reads the class names and the precision recipe (written by `pipeline convert`) from the
ONNX file's metadata, builds through `pipeline.parts.engines.builder` (with the candidate head
appended in memory, K from --max-candidates) with progress on stderr, and writes
`engines/<name>.engine` + `engines/<name>.engine.json`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pipeline.service.commands import bad_input, positive_int, progress


def register(sub) -> None:
    p = sub.add_parser("build-engine", help="build a TensorRT engine (+ sidecar JSON) from an ONNX model")
    p.add_argument("model", type=Path, help="the ONNX model (FP32, or FP16/INT8 from `pipeline convert`)")
    p.add_argument("-o", "--output", type=Path, help="engine path (default: engines/<model name>.engine)")
    p.add_argument("--input-size", type=positive_int, nargs="+", default=[640], metavar="PX",
                   help="width [height] of the model input (default 640)")
    p.add_argument("--min-batch", type=positive_int, default=1)
    p.add_argument("--opt-batch", type=positive_int, help="batch the kernels are tuned for (default: max batch)")
    p.add_argument("--max-batch", type=positive_int, default=1, help="must cover model.max_batch")
    p.add_argument("--workspace-mib", type=positive_int, default=2048, help="builder workspace limit")
    p.add_argument("--optimization-level", type=int, choices=range(6), default=3)
    p.add_argument("--hardware-compat", choices=["none", "ampere_plus", "same_compute_capability"], default="none",
                   help="let the plan run on other GPUs (costs some speed)")
    p.add_argument("--timing-cache", type=Path, help="default: beside the engine, keyed on GPU and TensorRT version")
    p.add_argument("--device-id", type=int, default=0, help="the GPU to build for")
    p.add_argument("--max-candidates", type=positive_int, default=3000, metavar="K",
                   help="K of the candidate head compiled into the plan; must equal model.max_candidates "
                        "(default 3000, the config's default; at most 3840, TensorRT's TopK limit)")
    p.add_argument("--raw-output", action="store_true",
                   help="build without the candidate head (for model.max_candidates: null)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        from pipeline.parts.engines.builder import (
            BuildOptions,
            EngineBuildError,
            build_engine,
        )
    except ImportError as exc:
        return bad_input(f"TensorRT is not installed here ({exc}); build engines where TensorRT is "
                     f"(e.g. NVIDIA's TensorRT container, with `pip install '.[gpu]'` for pycuda)")
    from pipeline.parts.gpu.cuda import CudaDevice, CudaError

    if not args.model.is_file():
        return bad_input(f"{args.model}: model file not found")
    sizes = args.input_size
    options = BuildOptions(input_size=(sizes[0], sizes[-1]), min_batch=args.min_batch,
                           opt_batch=args.opt_batch or args.max_batch, max_batch=args.max_batch,
                           workspace_mib=args.workspace_mib, optimization_level=args.optimization_level,
                           hardware_compatibility=args.hardware_compat, timing_cache=args.timing_cache,
                           precision=model_metadata(args.model).get("pipeline.precision", "fp32"),
                           max_candidates=None if args.raw_output else args.max_candidates)
    if not options.min_batch <= options.opt_batch <= options.max_batch:
        return bad_input(f"need --min-batch <= --opt-batch <= --max-batch, got {args.min_batch}, "
                     f"{options.opt_batch}, {args.max_batch}")
    engine = args.output or Path("engines") / f"{args.model.stem}.engine"
    try:
        device = CudaDevice.open(args.device_id)
    except CudaError as exc:
        return bad_input(str(exc))
    try:
        with device.active():
            sidecar = build_engine(args.model, engine, options, class_names(args.model),
                                   (device.name, device.compute_capability_text), report=progress)
    except EngineBuildError as exc:
        return bad_input(str(exc))
    finally:
        device.close()
    print(f"{engine}: TensorRT {sidecar.tensorrt_version}, {sidecar.gpu_name} (cc {sidecar.compute_capability}), "
          f"{sidecar.precision}, batch {args.min_batch}..{args.max_batch}")
    return 0


def model_metadata(path: Path) -> dict[str, str]:
    """The ONNX file's metadata_props (class names, precision recipe), read by ONNX Runtime."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return dict(session.get_modelmeta().custom_metadata_map)


def class_names(path: Path) -> tuple[str, ...]:
    from pipeline.parts.modelfile.model_info import parse_names

    text = model_metadata(path).get("names")
    return parse_names(text) if text else ()


