"""Decoding the model output into detections, apart from the backends that produce it: the
YOLO decode with NMS and the candidate-head decode."""
