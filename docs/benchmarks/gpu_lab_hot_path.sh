#!/bin/bash
# The hot path's figures on the GPU lab machine (issue 11's Done-when table).
# Run there after ../shared/gpu-lab's setup, from the project root, with GPURUN pointing
# at the folder that carries the cp312 wheels and yolov8n-640-random.onnx (.gpurun/):
#   bash docs/benchmarks/gpu_lab_hot_path.sh tests   # pytest -m gpu
#   bash docs/benchmarks/gpu_lab_hot_path.sh quick   # 8 cameras @ 125 and 1 camera @ 300
#   bash docs/benchmarks/gpu_lab_hot_path.sh lone    # 1 camera @ 300 three times, then 8 @ 125
#   bash docs/benchmarks/gpu_lab_hot_path.sh table   # every row of the table
#   bash docs/benchmarks/gpu_lab_hot_path.sh flat    # 8 cameras flat out and x 125 (queue re-check)
#   bash docs/benchmarks/gpu_lab_hot_path.sh fp16    # convert --fp16, then 8 x 125 and x 250
#   bash docs/benchmarks/gpu_lab_hot_path.sh final   # 1 x 300, 8 x 125, x 250, flat out, demo, then fp16
#   bash docs/benchmarks/gpu_lab_hot_path.sh cpus    # runtime.cpus: 1 x 300 on one CPU and not, 8 x 125 on 1 / 4 / any
#   bash docs/benchmarks/gpu_lab_hot_path.sh cpus1   # 1 x 300 on one CPU and anywhere, alternating, three each
#   bash docs/benchmarks/gpu_lab_hot_path.sh cpu1    # 1 x 300 on one CPU, --compare, then once more
# Logs and JSON go to $OUT.
GPURUN=${GPURUN:-.gpurun}
source /root/dc/env.sh
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
  "$GPURUN"/*.whl || exit 3
export PYTHONPATH=/tmp/site:$PWD:${PYTHONPATH:-} PYTHONUNBUFFERED=1 PIPELINE_TEST_MODEL=$PWD/engines/demo.onnx
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"

cfg() {  # name model input width height max_batch max_wait_us infer_queue [runtime.cpus]
cat > "/tmp/$1.yaml" <<EOF
cameras:
  - id: cam
    source: {kind: synthetic, seed: 1}
    width: $4
    height: $5
    fps: 30
model:
  path: $2
  backend: onnxruntime-cuda
  input_size: $3
  preprocess: gpu
  cuda_graph: true
  cudnn_conv_algo_search: EXHAUSTIVE
  max_batch: $6
  max_wait_us: $7
queues:
  infer: {size: $8}
budget_ms: 30
publisher: {endpoint: "tcp://127.0.0.1:5599"}
EOF
if [ -n "${9:-}" ]; then echo "runtime: {cpus: [$9]}" >> "/tmp/$1.yaml"; fi
}
b() {  # name config bench-args...
  n=$1; c=$2; shift 2; echo "=== $n $*"
  timeout 150 python3 -m pipeline --log-level WARNING bench "/tmp/$c.yaml" --duration 4 --warmup 1.5 \
    --engine-s 1.5 --json "$OUT/$n.json" "$@" > "$OUT/$n.txt" 2>&1
  echo "rc=$?"; grep -v '^bench:' "$OUT/$n.txt" | tail -16
}
Y=$GPURUN/yolov8n-640-random.onnx
cfg y1 "$Y" 640 1920 1080 1 0 4
cfg y1c "$Y" 640 1920 1080 1 0 4 3  # the lone camera's threads on one CPU (runtime.cpus)
cfg y8c1 "$Y" 640 1920 1080 8 2000 16 3
cfg y8c4 "$Y" 640 1920 1080 8 2000 16 "2, 3, 4, 5"
cfg y8 "$Y" 640 1920 1080 8 2000 16
cfg y8w0 "$Y" 640 1920 1080 8 0 16
cfg d8 engines/demo.onnx 416 1280 1024 8 2000 16

case "${1:-quick}" in
tests)
  timeout 280 python3 -m pytest -m gpu tests/gpu -q -p no:cacheprovider -rfEs > "$OUT/gpu_tests.log" 2>&1
  echo "pytest rc=$?"; tail -25 "$OUT/gpu_tests.log" ;;
quick)
  b cam8_125 y8 --cameras 8 --rate 125
  b cam1_300 y1 --cameras 1 --rate 300 ;;
table)
  b cam1_300 y1 --cameras 1 --rate 300 --compare
  b cam8_125 y8 --cameras 8 --rate 125
  b cam8_125_w0 y8w0 --cameras 8 --rate 125
  b cam8_250 y8 --cameras 8 --rate 250
  b cam8_250_si05 y8 --cameras 8 --rate 250 --switch-interval-ms 0.5
  b cam8_flat y8 --cameras 8
  b demo8_125 d8 --cameras 8 --rate 125 ;;
flat)  # after the queue fix (two conditions): 8 cameras flat out, and 8 x 125 again
  b cam8_flat_fix y8 --cameras 8
  b cam8_125_fix y8 --cameras 8 --rate 125 ;;
lone)  # 1 camera @ 300 three times (its run-to-run spread), then 8 x 125 as a check
  b cam1_300 y1 --cameras 1 --rate 300 --compare
  b cam1_300_b y1 --cameras 1 --rate 300
  b cam1_300_c y1 --cameras 1 --rate 300
  b cam8_125 y8 --cameras 8 --rate 125 ;;
cpus)  # runtime.cpus: the lone camera's threads on one CPU, alternating with anywhere; 8 cameras on 1, 4, any
  b cam1_300_cpu3 y1c --cameras 1 --rate 300 --compare
  b cam1_300_any y1 --cameras 1 --rate 300
  b cam1_300_cpu3_b y1c --cameras 1 --rate 300
  b cam1_300_any_b y1 --cameras 1 --rate 300
  b cam1_300_cpu3_c y1c --cameras 1 --rate 300
  b cam8_125_cpu3 y8c1 --cameras 8 --rate 125
  b cam8_125_cpu4 y8c4 --cameras 8 --rate 125
  b cam8_125_any y8 --cameras 8 --rate 125 ;;
cpus1)  # runtime.cpus again: 1 x 300 on one CPU and anywhere, alternating, three each
  for r in a b c; do b cam1_300_cpu3_$r y1c --cameras 1 --rate 300; b cam1_300_any_$r y1 --cameras 1 --rate 300; done ;;
cpu1)  # the lone camera on one CPU with the naive loop beside it, then once more
  b cam1_300_cpu3_cmp y1c --cameras 1 --rate 300 --compare
  b cam1_300_cpu3_d y1c --cameras 1 --rate 300 ;;
q250)  # 8 x 250 alone (after a queue-size change)
  b cam8_250 y8 --cameras 8 --rate 250 ;;
final)  # the closing run: the table's rows under the auto switch interval, then FP16
  b cam1_300 y1 --cameras 1 --rate 300 --compare
  b cam1_300_again y1 --cameras 1 --rate 300  # the same row once more: its run-to-run spread
  b cam8_125 y8 --cameras 8 --rate 125
  b cam8_250 y8 --cameras 8 --rate 250
  b cam8_flat y8 --cameras 8
  b demo8_125 d8 --cameras 8 --rate 125
  bash "$0" fp16 ;;
fp16)  # the model `pipeline convert --fp16` writes, same rows
  timeout 120 python3 -m pipeline --log-level WARNING convert "$Y" --fp16 --val-frames 40 > "$OUT/fp16_convert.txt" 2>&1
  echo "convert rc=$?"; tail -4 "$OUT/fp16_convert.txt"
  F=${Y%.onnx}-fp16.onnx
  cfg f8 "$F" 640 1920 1080 8 2000 16
  b fp16_cam8_125 f8 --cameras 8 --rate 125
  b fp16_cam8_250 f8 --cameras 8 --rate 250 ;;
esac
