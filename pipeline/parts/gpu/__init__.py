"""The GPU layer: CUDA device and primary context, pooled device and pinned buffers (the
fused letterbox kernel that runs on them is `pipeline.parts.preprocessing.letterbox_kernel`).

Everything here imports pycuda, so nothing outside the GPU backends and the assembly of
a GPU pipeline imports this package; `import pipeline` and the CPU path never do.
"""
