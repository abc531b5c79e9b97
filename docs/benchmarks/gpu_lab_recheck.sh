#!/bin/bash
# Run on the GPU lab machine, carrying .gpurun/ (the cp312 wheels of pydantic,
# prometheus-client, python-json-logger): gpu_lab_recheck.sh MODEL.onnx
MODEL=$(realpath "${1:?usage: $0 MODEL.onnx  (a YOLOv8n 640x640 ONNX export; docs/BENCHMARKS.md used random weights)}") || exit 2
source /root/dc/env.sh
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .gpurun/*.whl || exit 3
export PYTHONPATH=/tmp/site:$PWD:${PYTHONPATH:-} PYTHONUNBUFFERED=1 PIPELINE_TEST_MODEL=$PWD/engines/demo.onnx
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee $OUT/gpu.txt
timeout 150 python3 -m pytest -m gpu tests/gpu -q -p no:cacheprovider -rfEs > $OUT/gpu_tests.log 2>&1; echo "pytest rc=$?"; tail -4 $OUT/gpu_tests.log
cfg() {  # name cuda_graph max_batch max_wait_us algo infer_queue
cat > /tmp/$1.yaml <<EOF
cameras:
  - id: cam
    source: {kind: synthetic, seed: 1}
    width: 1920
    height: 1080
    fps: 30
model:
  path: $MODEL
  backend: onnxruntime-cuda
  input_size: 640
  preprocess: gpu
  cuda_graph: $2
  cudnn_conv_algo_search: $5
  max_batch: $3
  max_wait_us: $4
queues:
  infer: {size: $6}
budget_ms: 30
publisher: {endpoint: "tcp://127.0.0.1:5599"}
EOF
}
b() { n=$1; c=$2; shift 2; echo "=== $n $*"; timeout 120 python3 -m pipeline --log-level WARNING bench /tmp/$c.yaml --duration 4 --warmup 1.5 --json $OUT/$n.json "$@" > $OUT/$n.txt 2>&1; echo "rc=$?"; tail -14 $OUT/$n.txt; }
cfg g8 true 8 1000 EXHAUSTIVE 16; cfg g1 true 1 0 EXHAUSTIVE 4; cfg e8 false 8 1000 EXHAUSTIVE 16
b cam8_graph_b8 g8 --cameras 8 --rate 125
b cam8_exh_b8 e8 --cameras 8 --rate 125
b cam8_graph_b8_flat g8 --cameras 8 --compare
b cam1_graph_b1 g1 --cameras 1 --rate 60 --compare
