"""TensorRT engines built offline: the build itself (`builder`, imports tensorrt) and the
sidecar JSON that says what an engine was built from and for (`sidecar`, pure Python)."""
