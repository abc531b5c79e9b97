"""`pipeline export-triton MODEL REPO/`: a Triton model repository for a detection model.

Reads the model's signature and class names (an ONNX file through ONNX Runtime, or a
TensorRT plan through its sidecar JSON from `pipeline build-engine`) and writes
`REPO/<name>/config.pbtxt` + `REPO/<name>/1/model.{onnx,plan}` through
`pipeline.parts.engines.triton_repository`. An ONNX model is written with the same candidate
head the local backends append (`pipeline.parts.modelfile.candidate_head`, K from
--max-candidates), so the server answers K x 6 values an image and the client decodes
them like a local backend; --raw-output serves the graph as it is. A plan carries the
head it was built with. Needs the `triton` extra (Triton's protobuf definition of the
model configuration) and `onnx` for the head.
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.service.commands import bad_input, positive_int

if TYPE_CHECKING:
    from pipeline.parts.engines.triton_repository import ServedHead, ServedTensor



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
    p.add_argument("--max-candidates", type=positive_int, default=3000, metavar="K",
                   help="K of the candidate head appended to an ONNX model (default 3000, model.max_candidates')")
    p.add_argument("--raw-output", action="store_true",
                   help="serve the ONNX graph without the candidate head (the client then caps K on the host)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        from pipeline.parts.engines.triton_repository import RepositoryError, RepositoryOptions, write_repository
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
        k = None if args.raw_output else args.max_candidates
        served = _read_plan(args.model) if is_plan else _read_onnx(args.model, k, args.max_batch)
        folder = write_repository(args.repo, opts, served.model, served.input, served.output, served.names,
                                  served.head)
    except (RepositoryError, ValueError, OSError) as exc:
        return _fail(str(exc))
    head = f"candidate head K={served.head.k}" if served.head else "raw output"
    print(f"wrote {folder}/config.pbtxt ({platform}, max_batch_size {args.max_batch}, {len(served.names)} classes, "
          f"{head})")
    return 0


@dataclass(frozen=True)
class Served:
    """What the repository serves: the model's bytes, its tensors, class names and head."""

    model: bytes
    input: ServedTensor
    output: ServedTensor
    names: tuple[str, ...]
    head: ServedHead | None


def _read_onnx(path: Path, max_candidates: int | None, max_batch: int) -> Served:
    """An ONNX file's image input, class names and detection output: the candidate head's
    (K, 6) with the head appended (K clamped to the anchors), else the raw one."""
    import onnxruntime as ort

    from pipeline.parts.backends.onnxruntime_backend import signature
    from pipeline.parts.engines.triton_repository import RepositoryError, ServedHead, ServedTensor
    from pipeline.parts.modelfile.candidate_head import CANDIDATE_FIELDS, OUTPUT_NAME
    from pipeline.parts.modelfile.model_info import ModelError, resolve_class_names

    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        sig = signature(session, path)
        names = resolve_class_names(sig, None, session.get_modelmeta().custom_metadata_map)
        inp = ServedTensor(sig.input_name, sig.input_type, _dims(sig.input_shape))
        if max_candidates is None:
            out = ServedTensor(sig.output_name, session.get_outputs()[0].type, _dims(sig.output_shape))
            return Served(path.read_bytes(), inp, out, names, None)
        headed = _headed(path, sig, names, max_candidates, max_batch)
    except ModelError as exc:
        raise RepositoryError(str(exc)) from None
    except RepositoryError:
        raise
    except Exception as exc:  # ORT's own Fail/InvalidGraph types
        raise RepositoryError(f"{path}: not a usable ONNX model ({type(exc).__name__}: {exc})") from None
    out = ServedTensor(OUTPUT_NAME, "tensor(float)", (headed.candidates, CANDIDATE_FIELDS))  # the head answers float32
    head = ServedHead(headed.candidates, (sig.output_name, tuple(sig.output_shape)))
    return Served(headed.model_bytes, inp, out, names, head)


def _headed(path: Path, sig, names: tuple[str, ...], max_candidates: int, max_batch: int):
    """The model with the candidate head appended, checked like a local backend checks it."""
    from pipeline.config.model import OnnxRuntimeCpuConfig
    from pipeline.parts.engines.triton_repository import RepositoryError
    from pipeline.parts.modelfile.candidate_head import headed_model_bytes

    height, width = sig.input_shape[2:4]
    if not (isinstance(width, int) and isinstance(height, int)):
        raise RepositoryError(f"{path}: input {sig.input_name!r} {list(sig.input_shape)} has no fixed size; "
                              "the candidate head needs one (re-export with a fixed size, or --raw-output)")
    cfg = OnnxRuntimeCpuConfig(path=path, input_size=(width, height), class_names=names,
                               max_candidates=max_candidates, max_batch=min(max_batch, 64))
    return headed_model_bytes(cfg)


def _dims(shape) -> tuple[int, ...]:
    """A tensor's dims after the batch axis, -1 where not fixed (Triton's notation)."""
    return tuple(d if isinstance(d, int) and d > 0 else -1 for d in shape[1:])


def _read_plan(path: Path) -> Served:
    """The same, from a TensorRT plan's sidecar JSON (the head, if any, is compiled in)."""
    from pipeline.parts.engines.sidecar import EngineSidecar, SidecarError, sidecar_path
    from pipeline.parts.engines.triton_repository import RepositoryError, ServedHead, ServedTensor

    try:
        car = EngineSidecar.read(sidecar_path(path))
    except SidecarError as exc:
        raise RepositoryError(str(exc)) from None
    inp, out = car.inputs[0], car.outputs[0]
    head = ServedHead(int(out.shape[1]), None) if car.build.get("max_candidates") is not None else None
    return Served(path.read_bytes(), ServedTensor(inp.name, inp.dtype, tuple(inp.shape[1:])),
                  ServedTensor(out.name, out.dtype, tuple(out.shape[1:])), car.class_names, head)


def _fail(message: str) -> int:
    return bad_input(message, prefix="pipeline export-triton")
