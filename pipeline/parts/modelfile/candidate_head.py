"""The fixed-size candidate head appended to a YOLO-format detection graph, in memory.

Owns the graph surgery that makes a model return, per image, its K best anchors instead
of the whole raw tensor: the raw output (N, 4+C, A) (or the transposed (N, A, 4+C)),
cx cy w h then per-class scores, becomes `candidates` (N, K, 6) float32 with one row per
anchor `cx, cy, w, h, score, class_id` (model-input pixels, the score is the anchor's
best class score, the class id a float holding an integer), rows sorted by score, best
first. K = min(model.max_candidates, A). The graph is built with the onnx helper API
from the user's file and handed to the runtime as bytes: the file is never modified.

Ops (all in ONNX opset 11+, all in TensorRT's ONNX parser): Slice + ReduceMax for each
anchor's best score, TopK over the anchors, GatherElements for the K anchors' channels,
ArgMax over their classes, Concat, Transpose. One more term keeps a broken model visible: the sum of the
image's raw values times 0 is 0 for a finite tensor and NaN when any raw value is NaN or
inf (or when the finite values are so large, ~1e33, that their sum overflows float32:
no sane model emits those), and it is added to every row, so the host decoder's
finiteness check still turns such an image into an ERROR verdict although it sees only
K rows.

What happens when more than K anchors pass the confidence threshold: the K best by
score are kept (ties: the lower anchor index first), exactly Ultralytics' `max_nms`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from pipeline.config.model import LocalModelSettings, ModelSettings
from pipeline.parts.modelfile.model_info import (
    ONNX_ELEM_TYPES,
    ModelError,
    ModelSignature,
    check_input,
    host_dtype,
    input_dtype,
    resolve_class_names,
)

CANDIDATE_FIELDS = 6  # cx, cy, w, h, score, class id
OUTPUT_NAME = "candidates"
# Metadata the headed graph carries: the raw output's [name, shape], so the signature
# checks (class count, layout) still see what the user's model emits.
RAW_OUTPUT_KEY = "pipeline.candidate_head.raw_output"
# A Triton model's config.pbtxt parameter: the K of the head its graph ends in (written by
# `pipeline export-triton`, read by the Triton backend; with RAW_OUTPUT_KEY beside it
# when the raw output is known, as for an ONNX export).
K_KEY = "pipeline.candidate_head.k"
MIN_OPSET = 11  # GatherElements and TopK with K as an input
TENSORRT_TOPK_LIMIT = 3840  # ITopKLayer's largest K
_P = "candidate_head/"  # prefix of every name the head adds, so none collides with the model's


def uses_candidate_head(cfg: ModelSettings) -> bool:
    """Whether a local backend appends the head (ONNX Runtime; TensorRT has it compiled in
    by `build-engine`): unless model.max_candidates is null. A Triton model carries the
    head from `pipeline export-triton`, or not: its config parameters say which."""
    return cfg.max_candidates is not None and isinstance(cfg, LocalModelSettings)


@dataclass(frozen=True)
class HeadedModel:
    """The model with the head appended, serialized, and the K it was built with."""

    model_bytes: bytes
    candidates: int


def headed_model_bytes(cfg: LocalModelSettings) -> HeadedModel:
    """cfg.path with the candidate head appended (K from cfg.max_candidates); ModelError if
    the model cannot carry it."""
    import onnx

    if cfg.max_candidates is None:
        raise ValueError("headed_model_bytes needs model.max_candidates")
    try:
        model = onnx.load(str(cfg.path))
    except Exception as exc:  # onnx raises DecodeError/OSError/... for a file that is not a model
        raise ModelError(f"{cfg.path}: not a usable ONNX model ({type(exc).__name__}: {exc})") from None
    k = append_candidate_head(model, cfg, cfg.max_candidates)
    return HeadedModel(model.SerializeToString(), k)


def append_candidate_head(model, cfg: LocalModelSettings, max_candidates: int) -> int:
    """Append the head to `model` (an onnx.ModelProto, changed in place); returns K."""
    from onnx import TensorProto

    opset = _default_opset(model)
    if opset < MIN_OPSET:
        raise ModelError(f"{cfg.path}: opset {opset} is too old for the candidate head (needs {MIN_OPSET}+); "
                         "re-export the model or set model.max_candidates: null")
    raw = model.graph.output[0]
    shape = _dims(raw)
    sig = _signature(model, cfg)
    check_input(sig, cfg.input_size, cfg.max_batch)  # the same checks, in the same order, as without the head
    input_dtype(sig)
    num_classes = len(resolve_class_names(sig, cfg.class_names, _metadata(model)))
    channels_last = len(shape) == 3 and shape[1] != 4 + num_classes and shape[2] == 4 + num_classes
    anchors = shape[1] if channels_last else shape[2]
    if not isinstance(anchors, int) or anchors <= 0:
        anchors = probe_anchor_count(model, cfg, channels_last)
    k = min(int(max_candidates), anchors)
    nodes, inits = head_nodes(raw.name, raw.type.tensor_type.elem_type, num_classes, k, channels_last, opset)
    model.graph.node.extend(nodes)
    model.graph.initializer.extend(inits)
    batch = shape[0] if isinstance(shape[0], int) else (shape[0] or "batch")
    out = _value_info(OUTPUT_NAME, TensorProto.FLOAT, [batch, k, CANDIDATE_FIELDS])
    rest = list(model.graph.output[1:])
    del model.graph.output[:]
    model.graph.output.extend([out, *rest])
    entry = model.metadata_props.add()
    entry.key, entry.value = RAW_OUTPUT_KEY, json.dumps([raw.name, shape])
    return k


def raw_output(metadata: dict[str, str]) -> tuple[str, tuple] | None:
    """The raw output's (name, shape) recorded by the head, or None for a graph without it."""
    if RAW_OUTPUT_KEY not in metadata:
        return None
    name, shape = json.loads(metadata[RAW_OUTPUT_KEY])
    return str(name), tuple(shape)


def head_nodes(raw: str, elem_type: int, num_classes: int, k: int, channels_last: bool, opset: int):
    """Nodes and initializers from the raw output to `candidates`. The class is taken
    by ArgMax over the K picked anchors only: over all anchors it cost ~5x more on the
    CPU (0.6 ms at 80 x 8400), ReduceMax finds the best score for TopK much faster."""
    from onnx import TensorProto, helper, numpy_helper

    n = helper.make_node
    inits = [numpy_helper.from_array(np.array([k], np.int64), _P + "k"),
             numpy_helper.from_array(np.array(0, np.float32), _P + "zero"),
             numpy_helper.from_array(np.array([1, 4 + num_classes, 1], np.int64), _P + "channels")]
    src, nodes = raw, []
    if elem_type != TensorProto.FLOAT:  # FP16 models: the head computes and answers in float32
        nodes.append(n("Cast", [src], [_P + "raw32"], to=TensorProto.FLOAT))
        src = _P + "raw32"
    if channels_last:
        nodes.append(n("Transpose", [src], [_P + "raw_cf"], perm=[0, 2, 1]))
        src = _P + "raw_cf"
    nodes += [
        _slice(src, _P + "scores", 4, 4 + num_classes, inits),  # (N, C, A)
        _reduce("ReduceMax", _P + "scores", _P + "best", [1], opset, inits),  # (N, 1, A)
        n("TopK", [_P + "best", _P + "k"], [_P + "top_score", _P + "top_index"], axis=2, largest=1, sorted=1),
        n("Expand", [_P + "top_index", _P + "channels"], [_P + "pick_index"]),  # (N, 4+C, K)
        n("GatherElements", [src, _P + "pick_index"], [_P + "picked"], axis=2),  # the K anchors, all channels
        _slice(_P + "picked", _P + "boxes", 0, 4, inits),
        _slice(_P + "picked", _P + "picked_scores", 4, 4 + num_classes, inits),
        n("ArgMax", [_P + "picked_scores"], [_P + "class"], axis=1, keepdims=1),  # (N, 1, K), first of ties
        n("Cast", [_P + "class"], [_P + "class_f"], to=TensorProto.FLOAT),
        n("Concat", [_P + "boxes", _P + "top_score", _P + "class_f"], [_P + "table"], axis=1),  # (N, 6, K)
        _reduce("ReduceSum", src, _P + "sum", [1, 2], opset, inits),  # (N, 1, 1), one pass over the raw values
        n("Mul", [_P + "sum", _P + "zero"], [_P + "poison"]),  # 0, or NaN when the sum is NaN or inf
        n("Add", [_P + "table", _P + "poison"], [_P + "checked"]),
        n("Transpose", [_P + "checked"], [OUTPUT_NAME], perm=[0, 2, 1]),  # (N, K, 6)
    ]
    return nodes, inits


def _slice(src: str, dst: str, start: int, stop: int, inits: list):
    """src[:, start:stop] along the channel axis (Slice takes its bounds as inputs since opset 10)."""
    from onnx import helper, numpy_helper

    names = [f"{_P}{tag}{value}" for tag, value in (("i", start), ("i", stop), ("axis", 1))]
    known = {i.name for i in inits}
    for name, value in zip(names, (start, stop, 1)):
        if name not in known:
            inits.append(numpy_helper.from_array(np.array([value], np.int64), name))
    return helper.make_node("Slice", [src, *names], [dst])


def _reduce(op: str, src: str, dst: str, axes: list[int], opset: int, inits: list):
    from onnx import helper, numpy_helper

    # axes moved from an attribute to an input: ReduceSum in opset 13, ReduceMax in 18.
    if opset >= (13 if op == "ReduceSum" else 18):
        name = f"{_P}axes{''.join(map(str, axes))}"
        if name not in {i.name for i in inits}:
            inits.append(numpy_helper.from_array(np.array(axes, np.int64), name))
        return helper.make_node(op, [src, name], [dst], keepdims=1)
    return helper.make_node(op, [src], [dst], axes=axes, keepdims=1)


def probe_anchor_count(model, cfg: LocalModelSettings, channels_last: bool) -> int:
    """The anchor count of a model whose output shape is symbolic: one CPU run of the
    unmodified graph at cfg.input_size, at start-up only."""
    import onnxruntime as ort

    try:
        probe = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        w, h = cfg.input_size
        dtype = host_dtype(probe.get_inputs()[0].type)
        out = probe.run(None, {probe.get_inputs()[0].name: np.zeros((1, 3, h, w), dtype)})[0]
    except Exception as exc:  # ORT's own error types for a graph it cannot run
        raise ModelError(f"{cfg.path}: cannot run the model to count its anchors "
                         f"({type(exc).__name__}: {exc})") from None
    if out.ndim != 3:
        raise ModelError(f"{cfg.path}: output has shape {list(out.shape)}, expected YOLO format "
                         "(batch, 4+classes, anchors)")
    return int(out.shape[1] if channels_last else out.shape[2])


def _default_opset(model) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def _dims(value_info) -> list:
    dims = value_info.type.tensor_type.shape.dim
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in dims]


def _value_info(name: str, elem_type: int, shape: list):
    from onnx import helper

    return helper.make_tensor_value_info(name, elem_type, shape)


def _signature(model, cfg: LocalModelSettings) -> ModelSignature:
    graph = model.graph
    initializers = {i.name for i in graph.initializer}
    image = next(i for i in graph.input if i.name not in initializers)
    elem = ONNX_ELEM_TYPES.get(image.type.tensor_type.elem_type, "other")
    return ModelSignature(cfg.path, image.name, tuple(_dims(image)), elem, graph.output[0].name,
                          tuple(_dims(graph.output[0])))


def _metadata(model) -> dict[str, str]:
    return {p.key: p.value for p in model.metadata_props}
