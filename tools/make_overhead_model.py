"""Writes a tiny YOLO-format detector whose inference costs next to nothing, so a bench
with it measures the pipeline's own per-frame and per-batch host work (docs/BENCHMARKS.md,
"CPU overhead").

    python3 tools/make_overhead_model.py OUT.onnx [--side 64] [--stride 2]

The graph: input `images` (N, 3, SIDE, SIDE) float32, an average pool of `stride`, one
1x1 convolution to 4 + 3 channels, then the YOLOv8 output layout (N, 7, A) with A =
(SIDE / stride)^2 anchors: cx, cy (the anchor's cell centre plus a small offset), w, h
(4..20 px) and three sigmoid class scores that exceed 0.25 only on a few cells of a
synthetic part's frame, so decoding and NMS do real but small work. Weights are fixed
(not trained): the detections mean nothing, their cost is what matters. Class names
`scratch, spot, crack` go into the `names` metadata as Ultralytics writes them.
"""

from __future__ import annotations

import argparse

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

CLASSES = ("scratch", "spot", "crack")


def build(side: int, stride: int) -> onnx.ModelProto:
    cells = side // stride
    anchors = cells * cells
    channels = 4 + len(CLASSES)
    weights = np.zeros((channels, 3, 1, 1), np.float32)
    bias = np.zeros(channels, np.float32)
    weights[0:2, :, 0, 0] = 0.5  # centre offsets from the cell's brightness
    weights[2:4, :, 0, 0] = 2.0  # size logits
    # class logits: bright cells, dark cells, reddish cells; each passes 0.25 on ~1-2% of a part's cells
    weights[4:, :, 0, 0] = np.array([[8.0, 8.0, 8.0], [-12.0, -12.0, -12.0], [60.0, -60.0, 0.0]], np.float32)
    bias[4:] = np.array([-17.5, 3.6, -7.5], np.float32)
    ys, xs = np.meshgrid(np.arange(cells), np.arange(cells), indexing="ij")
    centres = np.stack([xs.ravel(), ys.ravel()]).astype(np.float32) * stride + stride / 2  # (2, A)
    inits = [
        numpy_helper.from_array(weights, "w"), numpy_helper.from_array(bias, "b"),
        numpy_helper.from_array(centres[None], "centres"),
        numpy_helper.from_array(np.array([0, channels, anchors], np.int64), "shape"),
        numpy_helper.from_array(np.array([4.0], np.float32), "min_wh"),
        numpy_helper.from_array(np.array([16.0], np.float32), "span_wh"),
    ]
    nodes = [
        helper.make_node("AveragePool", ["images"], ["pooled"], kernel_shape=[stride, stride], strides=[stride, stride]),
        helper.make_node("Conv", ["pooled", "w", "b"], ["conv"]),
        helper.make_node("Reshape", ["conv", "shape"], ["flat"]),
        helper.make_node("Split", ["flat"], ["xy", "wh", "cls"], axis=1, split=[2, 2, len(CLASSES)]),
        helper.make_node("Add", ["xy", "centres"], ["cxcy"]),
        helper.make_node("Sigmoid", ["wh"], ["wh_unit"]),
        helper.make_node("Mul", ["wh_unit", "span_wh"], ["wh_span"]),
        helper.make_node("Add", ["wh_span", "min_wh"], ["wh_px"]),
        helper.make_node("Sigmoid", ["cls"], ["scores"]),
        helper.make_node("Concat", ["cxcy", "wh_px", "scores"], ["output0"], axis=1),
    ]
    graph = helper.make_graph(
        nodes, "overhead-detector",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 3, side, side])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, ["batch", channels, anchors])],
        initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 12)])
    model.ir_version = 7
    names = "{" + ", ".join(f"{i}: '{n}'" for i, n in enumerate(CLASSES)) + "}"
    helper.set_model_props(model, {"names": names})
    onnx.checker.check_model(model)
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("--side", type=int, default=64, help="model input side, a multiple of 32")
    parser.add_argument("--stride", type=int, default=2, help="pixels per anchor cell")
    args = parser.parse_args()
    onnx.save(build(args.side, args.stride), args.out)
    print(f"wrote {args.out}: input {args.side}x{args.side}, {(args.side // args.stride) ** 2} anchors, "
          f"{len(CLASSES)} classes")


if __name__ == "__main__":
    main()
