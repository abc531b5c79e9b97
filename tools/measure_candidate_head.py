"""Measures the candidate head on the CPU (figures for docs/BENCHMARKS.md): per image, ONNX
Runtime CPU inference with and without the head, host decode of the raw tensor (no head)
and of the head's K x 6 rows, and the head alone on a raw tensor of the model's shape.

    python3 tools/measure_candidate_head.py MODEL.onnx SIDE [--reps N] [--k K]

Frames are synthetic parts (seed 9) letterboxed to SIDE x SIDE; the two sessions run
interleaved, frame by frame, so both see the same machine load. Prints p50 / p90 in ms.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper

from pipeline.config.model import OnnxRuntimeCpuConfig
from pipeline.parts.backends.onnxruntime_backend import OnnxRuntimeBackend
from pipeline.parts.decoding.yolo_decode import decode, decode_candidates
from pipeline.parts.modelfile.candidate_head import OUTPUT_NAME, head_nodes
from pipeline.parts.preprocessing import Letterboxer
from pipeline.parts.sources.synthetic import SyntheticSource


def frames(side: int, count: int = 10) -> list[np.ndarray]:
    source = SyntheticSource(640, 480, seed=9, defect_probability=0.7, realtime=False)
    letterbox = Letterboxer((side, side))
    out = []
    for k in range(count):
        tensor = np.empty((1, 3, side, side), np.float32)
        letterbox(source.render(k).image, tensor[0])
        out.append(tensor)
    return out


def timed(call: Callable[[], object]) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def summary(seconds: list[float]) -> str:
    return f"p50 {np.median(seconds) * 1e3:.3f} / p90 {np.percentile(seconds, 90) * 1e3:.3f} ms (n={len(seconds)})"


def head_alone(channels: int, anchors: int, k: int, runs: int = 300) -> list[float]:
    """The head's nodes on their own, fed a random raw tensor, in a 2-thread CPU session."""
    nodes, inits = head_nodes("raw", TensorProto.FLOAT, channels - 4, k, False, 17)
    graph = helper.make_graph(nodes, "head", [helper.make_tensor_value_info("raw", TensorProto.FLOAT, [1, channels, anchors])],
                              [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, [1, k, 6])], initializer=inits)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    session = ort.InferenceSession(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString(),
                                   options, providers=["CPUExecutionProvider"])
    raw = {"raw": np.random.default_rng(0).random((1, channels, anchors), dtype=np.float32)}
    for _ in range(10):
        session.run(None, raw)
    return [timed(lambda: session.run(None, raw)) for _ in range(runs)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("side", type=int)
    parser.add_argument("--reps", type=int, default=10)
    parser.add_argument("--k", type=int, default=3000)
    args = parser.parse_args()
    tensors = frames(args.side)
    plain, headed = (OnnxRuntimeBackend.from_config(OnnxRuntimeCpuConfig(path=args.model, input_size=args.side, threads=2,
                                                                max_candidates=k)) for k in (None, args.k))
    num_classes = len(plain.class_names)
    infer: dict[str, list[float]] = {"no head": [], "head": []}
    raws, rows = [plain.infer(t).copy() for t in tensors], [headed.infer(t).copy() for t in tensors]
    for _ in range(args.reps):
        for tensor in tensors:
            infer["no head"].append(timed(lambda t=tensor: plain.infer(t)))
            infer["head"].append(timed(lambda t=tensor: headed.infer(t)))
    decode_raw = [timed(lambda r=raw: decode(r, num_classes, 0.25, 0.45, 100)) for _ in range(50) for raw in raws]
    decode_rows = [timed(lambda r=row: decode_candidates(r, 0.25, 0.45, 100)) for _ in range(50) for row in rows]
    passing = [int((row[0, :, 4] > 0.25).sum()) for row in rows]
    print(f"{args.model} at {args.side}: raw {raws[0].shape[1:]}, head {rows[0].shape[1:]}; anchors above 0.25 "
          f"per image: median {int(np.median(passing))}, max {max(passing)}")
    print(f"  ORT CPU inference, no head: {summary(infer['no head'])}")
    print(f"  ORT CPU inference, head K {rows[0].shape[1]}: {summary(infer['head'])}")
    print(f"  host decode of the raw tensor: {summary(decode_raw)}")
    print(f"  host decode of the K x 6 rows: {summary(decode_rows)}")
    print(f"  the head alone on a {raws[0].shape[1:]} tensor: {summary(head_alone(*raws[0].shape[1:], rows[0].shape[1]))}")


if __name__ == "__main__":
    main()
