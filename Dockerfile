# Inspection pipeline daemon on NVIDIA's TensorRT image, with the demo inside.
# Build:  docker build -t inspection-pipeline:0.1.0 .
# Demo:   docker run --rm --gpus all inspection-pipeline:0.1.0                 (GPU, no mounts)
#         docker run --rm inspection-pipeline:0.1.0 /opt/inspection-pipeline/configs/demo.yaml   (CPU)
# A line: docs/OPERATIONS.md (mount the config, pass its path).
# 25.08 is TensorRT 10.13 (the version tests/test_trt_static.py checks the code against),
# CUDA 13.0, Python 3.12, Ubuntu 24.04 (NVIDIA's container release notes).
FROM nvcr.io/nvidia/tensorrt:25.08-py3

# PIP_BREAK_SYSTEM_PACKAGES: the image's own Python is this container's only user (PEP 668).
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_BREAK_SYSTEM_PACKAGES=1

SHELL ["/bin/bash", "-o", "pipefail", "-c"]
WORKDIR /opt/inspection-pipeline
# Dependencies change less often than the code: the pins and the package metadata first...
COPY constraints.txt pyproject.toml README.md ./
COPY pipeline ./pipeline
# ...installed with the GPU extra at the versions of constraints.txt (the file the docs
# tell users to install with). onnxruntime-gpu replaces the CPU wheel the core dependency
# brings (both install the module `onnxruntime`), then the build fails unless the CUDA
# provider is compiled in and every library it links is found (no GPU is needed for that;
# libcuda comes from the host driver at `docker run --gpus`). DL3013 wants pins in the
# command: they are in constraints.txt.
# hadolint ignore=DL3013
RUN pip install ".[gpu]" -c constraints.txt \
    && pip uninstall -y onnxruntime \
    && pip install --force-reinstall --no-deps onnxruntime-gpu -c constraints.txt \
    && python3 -c "import onnxruntime as o, sys; p = o.get_available_providers(); \
sys.exit(0 if 'CUDAExecutionProvider' in p else f'no CUDAExecutionProvider in onnxruntime: {p}')" \
    && lib="$(python3 -c 'import onnxruntime, pathlib; print(pathlib.Path(onnxruntime.__file__).parent / "capi" / "libonnxruntime_providers_cuda.so")')" \
    && test -f "$lib" \
    && if ldd "$lib" | grep "not found" | grep -v "libcuda\.so"; then echo "CUDA provider libraries missing" >&2; exit 1; fi \
    && groupadd --system --gid 10001 inspection \
    && useradd --system --uid 10001 --gid inspection --home-dir /var/lib/inspection-pipeline \
               --shell /usr/sbin/nologin inspection \
    && install -d -o inspection -g inspection -m 0750 /var/lib/inspection-pipeline \
               /var/lib/inspection-pipeline/engines /var/lib/inspection-pipeline/archive

# The demo: configs and the model they name (`../engines/demo.onnx`, relative to the
# config), so `docker run` with no mounts has something real to run.
COPY configs ./configs
COPY engines/demo.onnx engines/demo.md ./engines/

# Engines (built or rebuilt for this GPU) and the failed-part archive outlive the container.
VOLUME ["/var/lib/inspection-pipeline/engines", "/var/lib/inspection-pipeline/archive"]
# Metrics and health (the config must set http.host: 0.0.0.0 to publish it), verdicts.
EXPOSE 9108 5555

# Numeric, so Kubernetes' runAsNonRoot can check it: the `inspection` user made above.
# Camera devices: `docker run --group-add video` (or the host's video GID), see OPERATIONS.
USER 10001:10001
WORKDIR /var/lib/inspection-pipeline
HEALTHCHECK --interval=10s --timeout=3s --start-period=120s --retries=3 \
    CMD ["pipeline", "health", "--url", "http://127.0.0.1:9108/healthz"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["pipeline", "run"]
CMD ["/opt/inspection-pipeline/configs/demo-gpu.yaml"]
