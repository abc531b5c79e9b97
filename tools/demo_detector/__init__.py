"""The demo defect detector: dataset, model, assignment and loss, training, ONNX export.

A developer tool (never imported by the `pipeline` package, never run in CI). It trains
a small anchor-free detector on frames of the project's own synthetic camera, letterboxed
by the project's own `Letterboxer`, and exports it in the YOLOv8 output format that
`pipeline.parts.decoding.yolo_decode` reads. Entry point: `tools/train_demo_model.py`.
"""

CLASSES = ("scratch", "spot", "crack")
