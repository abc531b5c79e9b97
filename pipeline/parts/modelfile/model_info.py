"""What a detection model's signature must look like, independent of the runtime.

Owns the checks that turn an unusable ONNX model into a `ModelError` that names the file
and what is wrong (input rank/channels/size/batch, output layout, class count), and the
class-name resolution: config names, else the Ultralytics `names` metadata, else
generic `class0`.. names. Runtimes (ONNX Runtime now, the TensorRT builder later) read
the shapes with their own API and pass them here as tuples whose dims are an int (fixed),
a str (symbolic) or None (unknown).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.core.errors import PipelineError

Dim = int | str | None

# The ONNX tensor types a model may take and give, one table: ONNX Runtime's type string, the
# numpy dtype, the ONNX TensorProto element type (1 FLOAT, 10 FLOAT16) and Triton's datatype.
ONNX_FLOAT, ONNX_FLOAT16 = "tensor(float)", "tensor(float16)"
ONNX_DTYPES = {ONNX_FLOAT: np.float32, ONNX_FLOAT16: np.float16}
ONNX_ELEM_TYPES = {1: ONNX_FLOAT, 10: ONNX_FLOAT16}
TRITON_TYPES = {"FP32": ONNX_FLOAT, "FP16": ONNX_FLOAT16}

# One `id: 'name'` entry of a Python dict repr, as Ultralytics writes the `names` key.
_NAME_ENTRY = re.compile(r"""\s*(\d+)\s*:\s*(?:'((?:[^'\\]|\\.)*)'|"((?:[^"\\]|\\.)*)")\s*([,}])""")
_ESCAPE = re.compile(r"\\(x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|.)")
_SIMPLE_ESCAPES = {"n": "\n", "t": "\t", "r": "\r"}


class ModelError(PipelineError):
    """The model cannot be used; the message names the file and what is wrong."""


@dataclass(frozen=True)
class ModelSignature:
    """The one input and the detection output of a model, as read from the file."""

    path: Path
    input_name: str
    input_shape: tuple[Dim, ...]
    input_type: str  # e.g. "tensor(float)"
    output_name: str
    output_shape: tuple[Dim, ...]


def _fixed(dim: Dim) -> bool:
    return isinstance(dim, int) and dim > 0


def onnx_type(dtype: object) -> str:
    """The ONNX Runtime type string of a numpy dtype (its numpy name where ONNX_DTYPES has none)."""
    name = np.dtype(dtype).name  # type: ignore[call-overload]  # any dtype-like
    return next((onnx for onnx, np_type in ONNX_DTYPES.items() if np.dtype(np_type).name == name), name)


def host_dtype(onnx: str) -> type:
    """The numpy dtype a runtime's tensor of type `onnx` is read or fed in: float16 or float32."""
    return ONNX_DTYPES.get(onnx, np.float32)


def input_dtype(sig: ModelSignature) -> type:
    """np.float32 or np.float16, or ModelError for any other input type."""
    dtype = ONNX_DTYPES.get(sig.input_type)
    if dtype is None:
        raise ModelError(
            f"{sig.path}: input '{sig.input_name}' is {sig.input_type}, expected float or float16"
        )
    return dtype


def check_input(sig: ModelSignature, input_size: tuple[int, int], max_batch: int) -> None:
    """ModelError unless the input is NCHW, 3 channels, and fits input_size and max_batch."""
    shape, where = sig.input_shape, f"{sig.path}: input '{sig.input_name}' {list(sig.input_shape)}"
    if len(shape) != 4:
        raise ModelError(f"{where} has rank {len(shape)}, expected 4-D NCHW (batch, 3, height, width)")
    batch, channels, height, width = shape
    if _fixed(channels) and channels != 3:
        raise ModelError(f"{where} has {channels} channels, expected NCHW with 3 (is it NHWC?)")
    w, h = input_size
    if (_fixed(width) and width != w) or (_fixed(height) and height != h):
        raise ModelError(
            f"{where} expects {width}x{height} (width x height), but model.input_size is {w}x{h}"
        )
    if _fixed(batch) and batch != 1:
        raise ModelError(f"{where} has a fixed batch of {batch}: export with batch 1 or a dynamic batch")
    if _fixed(batch) and max_batch > 1:
        raise ModelError(
            f"{where} has a fixed batch of 1 but model.max_batch is {max_batch}: "
            "export with a dynamic batch"
        )


def output_num_classes(sig: ModelSignature, names_count: int | None) -> int | None:
    """Classes in the (N, 4+C, A) or (N, A, 4+C) output; None when no axis is fixed."""
    shape, where = sig.output_shape, f"{sig.path}: output '{sig.output_name}' {list(sig.output_shape)}"
    if len(shape) != 3:
        raise ModelError(f"{where} has rank {len(shape)}, expected YOLO format (batch, 4+classes, anchors)")
    fixed = [d for d in shape[1:] if _fixed(d) and d > 4]
    if names_count is not None:
        if fixed and 4 + names_count not in shape[1:]:
            raise ModelError(
                f"{where} has no axis of 4 + {names_count} = {4 + names_count} for the "
                f"{names_count} class names; the model seems to have {fixed[0] - 4} classes"
            )
        return names_count
    # Anchors usually outnumber 4+C, so the smaller fixed axis is the class axis.
    return min(fixed) - 4 if fixed else None


def parse_names(text: str) -> tuple[str, ...]:
    """Parse "{0: 'person', 1: 'bicycle'}" without eval; ValueError if malformed."""
    body = text.strip()
    if not body.startswith("{"):
        raise ValueError("not a {id: 'name'} dict")
    entries: dict[int, str] = {}
    pos, end = 1, ""
    while end != "}":
        match = _NAME_ENTRY.match(body, pos)
        if match is None:
            raise ValueError(f"cannot parse at character {pos}: {body[pos:pos + 20]!r}")
        index, single, double, end = match.groups()
        entries[int(index)] = _unescape(single if single is not None else double)
        pos = match.end()
    if body[pos:].strip() or sorted(entries) != list(range(len(entries))) or not entries:
        raise ValueError("ids must be 0..n-1 with nothing after the closing brace")
    return tuple(entries[i] for i in range(len(entries)))


def _unescape(text: str) -> str:
    def one(match: re.Match[str]) -> str:
        code = match.group(1)
        if code[0] in "xu" and len(code) > 1:
            return chr(int(code[1:], 16))
        return _SIMPLE_ESCAPES.get(code, code)

    return _ESCAPE.sub(one, text)


def resolve_class_names(
    sig: ModelSignature, configured: tuple[str, ...] | None, metadata: dict[str, str]
) -> tuple[str, ...]:
    """Config names, else metadata `names`, else class0..; all checked against the output."""
    names = configured
    if names is None and "names" in metadata:
        try:
            names = parse_names(metadata["names"])
        except ValueError as exc:
            raise ModelError(
                f"{sig.path}: metadata 'names' is malformed ({exc}); set model.class_names"
            ) from None
    count = output_num_classes(sig, None if names is None else len(names))
    if names is not None:
        return tuple(names)
    if count is None:
        raise ModelError(
            f"{sig.path}: cannot tell the class count from output {list(sig.output_shape)}; "
            "set model.class_names"
        )
    return tuple(f"class{i}" for i in range(count))
