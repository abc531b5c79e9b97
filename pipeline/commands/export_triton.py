"""`pipeline export-triton MODEL REPO/`: a Triton model repository for a detection model.

Reads the model's signature and class names (an ONNX file through ONNX Runtime, or a
TensorRT plan through its sidecar JSON from `pipeline build-engine`) and writes
`REPO/<name>/config.pbtxt` + `REPO/<name>/1/model.{onnx,plan}` through
`pipeline.engines.triton_repository`. Needs the `triton` extra (Triton's protobuf
definition of the model configuration).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from pipeline.commands import positive_int

EXIT_BAD_INPUT = 2


def register(sub) -> None:
    p = sub.add_parser("export-triton", help="write a Triton model repository (config.pbtxt + model) for a model")
    p.add_argument("model", type=Path, help="ONNX model, or a TensorRT plan (.engine) with its sidecar JSON")
    p.add_argument("repo", type=Path, help="the model repository folder (created if missing)")
    p.add_argument("--name", help="model name in the repository (default: the file's stem)")
    p.add_argument("--platform", choices=["onnxruntime", "python", "tensorrt"],
                   help="onnxruntime (default for .onnx; the official container), python (ONNX Runtime in "
                        "the Python backend, for the server bundled in nvidia-pytriton), tensorrt (for .engine)")
    p.add_argument("--max-batch", type=positive_int, default=8, help="max_batch_size (default 8)")
    p.add_argument("--max-queue-delay-us", type=int, default=2000,
                   help="dynamic batcher: how long a request may wait for others (default 2000)")
    p.add_argument("--preferred-batch", type=positive_int, nargs="*", default=[], metavar="N")
    p.add_argument("--instances", type=positive_int, default=1, help="model instances (default 1)")
    p.add_argument("--gpu", action="store_true", help="instance group KIND_GPU (default KIND_CPU)")
    p.add_argument("--threads", type=positive_int, default=1, help="python platform: ONNX Runtime threads")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        from pipeline.engines.triton_repository import RepositoryError, RepositoryOptions, write_repository
    except ImportError as exc:
        return _fail(f"export-triton needs the Triton client's protobuf definitions ({exc}); "
                     f"pip install '.[triton]'")
    if not args.model.is_file():
        return _fail(f"{args.model}: model file not found")
    is_plan = args.model.suffix in (".engine", ".plan")
    platform = args.platform or ("tensorrt" if is_plan else "onnxruntime")
    if (platform == "tensorrt") != is_plan:
        return _fail(f"{args.model}: platform {platform} needs {'a TensorRT plan' if platform == 'tensorrt' else 'an ONNX file'}")
    name = args.name or re.sub(r"[^A-Za-z0-9_.-]", "_", args.model.stem)
    opts = RepositoryOptions(name, platform, args.max_batch, args.max_queue_delay_us, tuple(args.preferred_batch),
                             args.instances, args.gpu or platform == "tensorrt", args.threads)
    try:
        inp, out, names = _read_plan(args.model) if is_plan else _read_onnx(args.model)
        folder = write_repository(args.repo, opts, args.model, inp, out, names)
    except (RepositoryError, ValueError, OSError) as exc:
        return _fail(str(exc))
    print(f"wrote {folder}/config.pbtxt ({platform}, max_batch_size {args.max_batch}, {len(names)} classes)")
    return 0


def _read_onnx(path: Path):
    """The image input, the detection output and class names of an ONNX file."""
    import onnxruntime as ort

    from pipeline.backends.base import ModelError
    from pipeline.backends.model_info import resolve_class_names
    from pipeline.backends.onnxruntime_backend import signature
    from pipeline.engines.triton_repository import RepositoryError, ServedTensor

    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        sig = signature(session, path)
        names = resolve_class_names(sig, None, session.get_modelmeta().custom_metadata_map)
    except ModelError as exc:
        raise RepositoryError(str(exc)) from None
    except Exception as exc:  # ORT's own Fail/InvalidGraph types
        raise RepositoryError(f"{path}: not a usable ONNX model ({type(exc).__name__}: {exc})") from None
    dims = lambda shape: tuple(d if isinstance(d, int) and d > 0 else -1 for d in shape[1:])  # noqa: E731
    return (ServedTensor(sig.input_name, sig.input_type, dims(sig.input_shape)),
            ServedTensor(sig.output_name, session.get_outputs()[0].type, dims(sig.output_shape)), names)


def _read_plan(path: Path):
    """The same, from a TensorRT plan's sidecar JSON."""
    from pipeline.engines.sidecar import EngineSidecar, SidecarError, sidecar_path
    from pipeline.engines.triton_repository import RepositoryError, ServedTensor

    try:
        car = EngineSidecar.read(sidecar_path(path))
    except SidecarError as exc:
        raise RepositoryError(str(exc)) from None
    inp, out = car.inputs[0], car.outputs[0]
    return (ServedTensor(inp.name, inp.dtype, tuple(inp.shape[1:])),
            ServedTensor(out.name, out.dtype, tuple(out.shape[1:])), car.class_names)


def _fail(message: str) -> int:
    print(f"pipeline export-triton: {message}", file=sys.stderr)
    return EXIT_BAD_INPUT
