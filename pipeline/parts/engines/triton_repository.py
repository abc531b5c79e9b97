"""A Triton model repository for one detection model: files and `config.pbtxt`.

Owns the layout `<repo>/<name>/config.pbtxt` + `<repo>/<name>/1/<model file>` and the
model configuration written into it (inputs/outputs, max batch, dynamic batching,
instance group, the class names as parameter `names` in Ultralytics' dict format, and,
for a graph that ends in the candidate head, its K and raw output as parameters
`pipeline.candidate_head.k` / `.raw_output`; `pipeline.parts.backends.triton_backend` reads
them back and decodes the K x 6 rows like the local backends). The configuration is built as Triton's
own protobuf message (`tritonclient.grpc.model_config_pb2`), so what is written is
what the server parses. Platforms: `onnxruntime` (the official container's ONNX Runtime
backend), `python` (ONNX Runtime inside the Python backend, for a server that has only
that one, like the `tritonserver` bundled in `nvidia-pytriton`), `tensorrt` (a plan from
`pipeline build-engine`, described by its sidecar JSON).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from google.protobuf import text_format

from pipeline.core.errors import PipelineError
from pipeline.parts.modelfile.candidate_head import K_KEY, RAW_OUTPUT_KEY
from pipeline.parts.modelfile.model_info import ONNX_DTYPES, TRITON_TYPES

PLATFORMS = ("onnxruntime", "python", "tensorrt")
# Triton config types are "TYPE_" + its datatype; a tensor is named by its ONNX type or numpy name.
_TYPES = {name: f"TYPE_{triton}" for triton, onnx in TRITON_TYPES.items()
          for name in (onnx, np.dtype(ONNX_DTYPES[onnx]).name)}


class RepositoryError(PipelineError):
    """The model cannot be exported; the message names the file and what is wrong."""


@dataclass(frozen=True)
class ServedTensor:
    name: str
    onnx_type: str  # "tensor(float)" / "float32"
    dims: tuple[int, ...]  # per image, without the batch axis


@dataclass(frozen=True)
class ServedHead:
    """The candidate head a served graph ends in: its K, and the raw output it reads
    (name and full shape; None when unknown, as for a TensorRT plan)."""

    k: int
    raw_output: tuple[str, tuple] | None


@dataclass(frozen=True)
class RepositoryOptions:
    name: str
    platform: str  # one of PLATFORMS
    max_batch: int
    max_queue_delay_us: int
    preferred_batch: tuple[int, ...]
    instances: int
    gpu: bool  # instance group KIND_GPU instead of KIND_CPU
    intra_op_threads: int  # python platform: ONNX Runtime threads per instance


def model_config(opts: RepositoryOptions, inp: ServedTensor, out: ServedTensor, names: tuple[str, ...],
                 head: ServedHead | None = None):
    """Triton's ModelConfig message for this model."""
    from tritonclient.grpc import model_config_pb2 as mc

    config = mc.ModelConfig(name=opts.name, max_batch_size=opts.max_batch)
    if opts.platform == "tensorrt":
        config.platform = "tensorrt_plan"
    else:
        config.backend = opts.platform
    for target, tensor in ((config.input.add(), inp), (config.output.add(), out)):
        target.name, target.dims[:] = tensor.name, list(tensor.dims)
        target.data_type = mc.DataType.Value(_triton_type(tensor))
    if opts.max_batch > 1:
        config.dynamic_batching.max_queue_delay_microseconds = opts.max_queue_delay_us
        config.dynamic_batching.preferred_batch_size[:] = list(opts.preferred_batch)
    group = config.instance_group.add()
    group.count = opts.instances
    group.kind = mc.ModelInstanceGroup.KIND_GPU if opts.gpu else mc.ModelInstanceGroup.KIND_CPU
    config.parameters["names"].string_value = ultralytics_names(names)
    if head is not None:
        config.parameters[K_KEY].string_value = str(head.k)
        if head.raw_output is not None:
            config.parameters[RAW_OUTPUT_KEY].string_value = json.dumps(list(head.raw_output))
    if opts.platform == "python":
        config.parameters["intra_op_threads"].string_value = str(opts.intra_op_threads)
    return config


def write_repository(repo: Path, opts: RepositoryOptions, model: bytes, inp: ServedTensor,
                     out: ServedTensor, names: tuple[str, ...], head: ServedHead | None = None) -> Path:
    """Write `<repo>/<name>/` with `model` (the ONNX graph or plan, serialized) in it,
    replacing an older export of the same name; its folder."""
    folder = repo / opts.name
    if folder.exists():
        shutil.rmtree(folder)
    version = folder / "1"
    version.mkdir(parents=True)
    target = {"tensorrt": "model.plan"}.get(opts.platform, "model.onnx")
    (version / target).write_bytes(model)
    if opts.platform == "python":
        shutil.copyfile(Path(__file__).with_name("triton_python_model.py"), version / "model.py")
    text = text_format.MessageToString(model_config(opts, inp, out, names, head))
    (folder / "config.pbtxt").write_text(text)
    return folder


def ultralytics_names(names: tuple[str, ...]) -> str:
    """{0: 'scratch', 1: 'spot'}: the format `model_info.parse_names` reads."""
    quoted = (repr(n) for n in names)
    return "{" + ", ".join(f"{i}: {q}" for i, q in enumerate(quoted)) + "}"


def _triton_type(tensor: ServedTensor) -> str:
    if tensor.onnx_type not in _TYPES:
        raise RepositoryError(f"tensor {tensor.name!r} is {tensor.onnx_type}; Triton export supports float32/float16")
    return _TYPES[tensor.onnx_type]
