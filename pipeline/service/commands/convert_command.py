"""`pipeline convert MODEL.onnx --fp16 | --int8 --calib DIR`: a lower-precision ONNX model
for TensorRT's strongly typed build, written only if it passes the accuracy gate.

The converted model goes to a temporary file beside the output, is measured against
FP32 (`pipeline.service.convert.accuracy_gate`), and is moved into place only when it loses no
more than allowed; otherwise the command exits 1 and FP32 stays what the line runs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipeline.service.commands import EXIT_FAILED, EXIT_OK, bad_input, positive_int, progress


def register(sub) -> None:
    p = sub.add_parser("convert", help="make an FP16 or INT8 (Q/DQ) ONNX model, gated on accuracy")
    p.add_argument("model", type=Path, help="the FP32 ONNX model")
    kind = p.add_mutually_exclusive_group(required=True)
    kind.add_argument("--fp16", action="store_true", help="FP16 weights and compute, FP32 inputs/outputs")
    kind.add_argument("--int8", action="store_true", help="Q/DQ INT8, calibrated on --calib images")
    p.add_argument("--calib", type=Path, help="folder of calibration images (for --int8)")
    p.add_argument("--calib-limit", type=positive_int, default=256, help="use at most this many images")
    p.add_argument("--calib-method", choices=["minmax", "entropy", "percentile"], default="minmax")
    p.add_argument("-o", "--output", type=Path, help="default: <model>-fp16.onnx / <model>-int8.onnx beside it")
    p.add_argument("--input-size", type=positive_int, help="square model input side (default: the model's, else 640)")
    p.add_argument("--val", type=Path, help="folder of validation images (no labels: FP32 is the reference); "
                                            "default: synthetic camera frames with ground truth")
    p.add_argument("--val-frames", type=positive_int, default=100, help="synthetic validation frames")
    p.add_argument("--max-map-drop", type=float, default=0.02, help="largest allowed mAP@0.5 loss (absolute)")
    p.add_argument("--min-verdict-agreement", type=float, default=0.98,
                   help="smallest allowed fraction of frames with FP32's PASS/FAIL")
    p.add_argument("--backend", default="onnxruntime", choices=("onnxruntime", "onnxruntime-cuda"),
                   help="ONNX Runtime backend the gate runs both models on (the CPU, or CUDA)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pipeline.parts.modelfile.model_info import ModelError

    try:
        from pipeline.service.convert import accuracy_gate, precision
    except ImportError as exc:
        return bad_input(f"conversion needs the convert extra (pip install '.[convert]'): {exc}")
    if not args.model.is_file():
        return bad_input(f"{args.model}: model file not found")
    if args.int8 and args.calib is None:
        return bad_input("--int8 needs --calib DIR, a folder of representative images")
    suffix = "fp16" if args.fp16 else "int8"
    output = args.output or args.model.with_name(f"{args.model.stem}-{suffix}.onnx")
    staging = output.with_name(f".{output.name}.partial")
    size = (args.input_size, args.input_size) if args.input_size else _model_size(args.model)
    try:
        _convert(args, precision, staging, size)
        data = (accuracy_gate.ValidationSet.folder(args.val) if args.val
                else accuracy_gate.ValidationSet.synthetic(args.val_frames))
        progress(f"accuracy gate: {len(data.images)} frames on backend {args.backend} ...")
        result = accuracy_gate.run_gate(args.model, staging, data, size, args.max_map_drop,
                                        args.min_verdict_agreement, backend=args.backend)
    except (ValueError, ModelError, precision.ConversionError) as exc:
        staging.unlink(missing_ok=True)
        return bad_input(str(exc))
    if not result.passed:
        staging.unlink(missing_ok=True)
        print(f"refused: {suffix} model loses too much: {result.describe()}; FP32 stays the model", file=sys.stderr)
        return EXIT_FAILED  # the gate refused the converted model
    staging.replace(output)
    print(f"{output}: {suffix} written; {result.describe()}")
    return EXIT_OK


def _convert(args: argparse.Namespace, precision, staging: Path, size: tuple[int, int]) -> None:
    if args.fp16:
        progress(f"converting {args.model} to FP16 (FP32 inputs and outputs) ...")
        precision.to_fp16(args.model, staging)
        return
    from pipeline.service.convert.calibration import ImageFolderReader

    input_name = _input_name(args.model)
    reader = ImageFolderReader(args.calib, input_name, size, args.calib_limit, report=_calibration_progress)
    progress(f"calibrating INT8 on {len(reader.files)} images from {args.calib} ({args.calib_method}) ...")
    precision.to_int8(args.model, staging, reader, args.calib_method)
    print(file=sys.stderr)


def _input_name(model: Path) -> str:
    import onnxruntime as ort

    return ort.InferenceSession(str(model), providers=["CPUExecutionProvider"]).get_inputs()[0].name


def _model_size(model: Path) -> tuple[int, int]:
    """The model's fixed input width and height, or 640x640 for a dynamic one."""
    import onnxruntime as ort

    shape = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"]).get_inputs()[0].shape
    h, w = shape[2:4] if len(shape) == 4 else (None, None)
    return (w, h) if isinstance(w, int) and isinstance(h, int) else (640, 640)


def _calibration_progress(done: int, total: int) -> None:
    print(f"\r  calibration images {done}/{total}", end="", file=sys.stderr, flush=True)


