"""ONNX export of a trained `DemoDetector`, the way the pipeline expects to load it.

Owns the exported file's contract: input `images` (batch, 3, H, W) float32 RGB in 0..1,
letterboxed with pad 114; output `output0` (batch, 4 + C, anchors) as YOLOv8 writes it;
opset 17; a dynamic batch axis; metadata `names` in Ultralytics' own spelling
("{0: 'scratch', 1: 'spot', 2: 'crack'}") plus `imgsz` and `stride`, so the pipeline can
take the class names from the file.
"""

from __future__ import annotations

from pathlib import Path

import onnx
import torch
from torch import nn

from demo_detector.model import INPUT_MULTIPLE, DemoDetector


class _Predict(nn.Module):
    """Wraps the detector so the traced graph is `predict`, decoding included."""

    def __init__(self, model: DemoDetector):
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model.predict(images)


def export_onnx(model: DemoDetector, path: Path, size: int, class_names: tuple[str, ...]) -> Path:
    model = model.float().cpu().eval()
    dummy = torch.zeros(1, 3, size, size)
    path.parent.mkdir(parents=True, exist_ok=True)
    # The TorchScript exporter: it needs no onnxscript and gives a compact, folded graph.
    torch.onnx.export(_Predict(model), (dummy,), str(path), input_names=["images"], output_names=["output0"],
                      opset_version=17, dynamic_axes={"images": {0: "batch"}, "output0": {0: "batch"}},
                      do_constant_folding=True, dynamo=False)
    with torch.no_grad():
        anchors = model.predict(dummy).shape[-1]
    _finish(path, size, class_names, anchors)
    return path


def _finish(path: Path, size: int, class_names: tuple[str, ...], anchors: int) -> None:
    proto = onnx.load(str(path))
    # The tracer leaves the output's class axis symbolic; the pipeline reads the number
    # of classes from it, so write the static shape (only the batch axis is dynamic).
    dims = proto.graph.output[0].type.tensor_type.shape.dim
    dims[0].dim_param = "batch"
    dims[1].dim_value = 4 + len(class_names)
    dims[2].dim_value = anchors
    names = "{" + ", ".join(f"{i}: '{n}'" for i, n in enumerate(class_names)) + "}"
    meta = {"names": names, "imgsz": f"[{size}, {size}]", "stride": str(INPUT_MULTIPLE),
            "task": "detect", "description": "demo defect detector (tools/train_demo_model.py)"}
    del proto.metadata_props[:]
    for key, value in meta.items():
        proto.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))
