"""Rewrites an FP32 ONNX model as FP16 (FP32 inputs/outputs) or as a Q/DQ INT8 model.

Owns the precision recipes that TensorRT 11 requires to be in the graph (it has no
precision builder flags): FP16 through onnxconverter-common's float16 converter with
`keep_io_types`, so the pipeline still feeds FP32 and reads FP32, plus two repairs it
needs on YOLOv8 (below). ONNX Runtime's own copy of that converter
(`onnxruntime.transformers`) is not used: onnxruntime-gpu builds may lack it, as the GPU
lab's does. INT8 through ONNX Runtime's `quantize_static`
in QDQ format with symmetric INT8 activations and weights (what TensorRT's explicit
quantization accepts), calibrated by a `CalibrationDataReader`. Each result carries the
source's metadata (class names) plus `pipeline.precision`, which `build-engine` records.
What crosses the boundary: ONNX files in and out; nothing here judges accuracy.
"""

from __future__ import annotations

from pathlib import Path

import onnx

from pipeline.core.errors import PipelineError

PRECISION_KEY = "pipeline.precision"
CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
# Only the compute-heavy ops get Q/DQ. The detection head's decode (concat of pixel box
# coordinates with 0..1 class scores, sigmoid, DFL) stays FP32: one INT8 scale over
# boxes up to ~640 px would round every score to 0 (seen on the demo model: mAP 0).
QUANTIZED_OPS = ["Conv", "MatMul", "Gemm"]


class ConversionError(PipelineError):
    """The model could not be converted; the message says which step failed."""


def stamp(model: onnx.ModelProto, precision: str) -> None:
    props = {p.key: p for p in model.metadata_props}
    if PRECISION_KEY in props:
        props[PRECISION_KEY].value = precision
    else:
        model.metadata_props.add(key=PRECISION_KEY, value=precision)


def to_fp16(source: Path, target: Path) -> None:
    """FP16 weights and compute, FP32 inputs and outputs."""
    import warnings

    try:
        from onnxconverter_common import float16
    except ImportError:
        raise ConversionError("FP16 conversion needs onnxconverter-common: pip install "
                              "'inspection-pipeline[convert]'") from None
    model = onnx.load(str(source))
    try:
        with warnings.catch_warnings():  # one warning per tiny weight clamped to FP16's range
            warnings.simplefilter("ignore")
            converted = float16.convert_float_to_float16(model, keep_io_types=True)
        _repair_fp16(converted, {node.name for node in model.graph.node})
        onnx.checker.check_model(converted, full_check=True)  # every node's types agree again
    except Exception as exc:  # the converter and the checker raise plain Exceptions
        raise ConversionError(f"{source}: FP16 conversion failed ({type(exc).__name__}: {exc})") from exc
    stamp(converted, "fp16")
    onnx.save(converted, str(target))


def _repair_fp16(model: onnx.ModelProto, original_nodes: set[str]) -> None:
    """What onnxconverter-common leaves FP32 in an FP16 graph. (1) The model's own Cast
    nodes to float still cast to float32 (YOLOv8's anchor grid: Shape -> Cast -> Add
    meets FP16 tensors): they cast to float16 now; the converter's own input/output casts
    (new names) stay. (2) Its value_info keeps float32 types for tensors it retyped
    (around Resize); the types are inferred again from the graph, so it goes."""
    for node in model.graph.node:
        if node.op_type == "Cast" and node.name in original_nodes:
            for attribute in node.attribute:
                if attribute.name == "to" and attribute.i == onnx.TensorProto.FLOAT:
                    attribute.i = onnx.TensorProto.FLOAT16
    del model.graph.value_info[:]


def to_int8(source: Path, target: Path, reader, method: str = "minmax") -> None:
    """Q/DQ INT8 (symmetric activations and per-channel weights), calibrated by `reader`."""
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    methods = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
               "percentile": CalibrationMethod.Percentile}
    quiet = _QuietRootLogger()  # the quantizer logs one INFO line per tensor on the root logger
    try:
        quantize_static(str(source), str(target), reader, quant_format=QuantFormat.QDQ,
                        activation_type=QuantType.QInt8, weight_type=QuantType.QInt8, per_channel=True,
                        calibrate_method=methods[method], op_types_to_quantize=QUANTIZED_OPS,
                        extra_options={"ActivationSymmetric": True, "WeightSymmetric": True})
    except Exception as exc:  # ORT's quantizer raises what its graph passes raise
        raise ConversionError(f"{source}: INT8 quantization failed ({type(exc).__name__}: {exc})") from exc
    finally:
        quiet.restore()
    model = onnx.load(str(target))
    _copy_metadata(onnx.load(str(source), load_external_data=False), model)
    stamp(model, f"int8-qdq-{method}")
    onnx.save(model, str(target))


class _QuietRootLogger:
    def __init__(self):
        import logging

        self._root = logging.getLogger()
        self._level = self._root.level
        self._root.setLevel(logging.ERROR)

    def restore(self) -> None:
        self._root.setLevel(self._level)


def _copy_metadata(source: onnx.ModelProto, target: onnx.ModelProto) -> None:
    have = {p.key for p in target.metadata_props}
    for prop in source.metadata_props:
        if prop.key not in have:
            target.metadata_props.add(key=prop.key, value=prop.value)
