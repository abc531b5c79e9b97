# Inspection pipeline daemon on NVIDIA's TensorRT runtime image.
# Build:  docker build -t inspection-pipeline:0.1.0 .
# Run:    see docs/OPERATIONS.md (needs --gpus all and a mounted config).
# The tag pins TensorRT 10.3, CUDA 12.6 and Python 3.10 (Ubuntu 22.04).
FROM nvcr.io/nvidia/tensorrt:24.08-py3

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /opt/inspection-pipeline
# Dependencies change less often than the code: one layer for the package metadata...
COPY pyproject.toml README.md ./
COPY pipeline ./pipeline
# ...installed with the GPU extra (TensorRT itself comes with the base image). DL3013
# wants pinned packages: this installs the checkout itself, whose pyproject bounds its deps.
# hadolint ignore=DL3013
RUN pip install ".[gpu]" \
    && groupadd --system --gid 10001 inspection \
    && useradd --system --uid 10001 --gid inspection --groups video --home-dir /var/lib/inspection-pipeline \
               --shell /usr/sbin/nologin inspection \
    && install -d -o inspection -g inspection -m 0750 /var/lib/inspection-pipeline \
               /var/lib/inspection-pipeline/engines /var/lib/inspection-pipeline/archive

# Engines (built or rebuilt for this GPU) and the failed-part archive outlive the container.
VOLUME ["/var/lib/inspection-pipeline/engines", "/var/lib/inspection-pipeline/archive"]
# Metrics and health (the config must set http.host: 0.0.0.0 to publish it), verdicts.
EXPOSE 9108 5555

# Numeric, so Kubernetes' runAsNonRoot can check it: the `inspection` user made above.
USER 10001:10001
WORKDIR /var/lib/inspection-pipeline
HEALTHCHECK --interval=10s --timeout=3s --start-period=120s --retries=3 \
    CMD ["pipeline", "health", "--url", "http://127.0.0.1:9108/healthz"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["pipeline", "run"]
CMD ["/etc/inspection-pipeline/line.yaml"]
