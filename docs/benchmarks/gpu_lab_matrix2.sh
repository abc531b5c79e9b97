#!/usr/bin/env bash
# Second GPU batch: the configs that the first batch showed to work, py-spy, the switch interval knob.
set -u
MODEL=$(realpath "${1:?usage: $0 MODEL.onnx  (a YOLOv8n 640x640 ONNX export; docs/BENCHMARKS.md used random weights)}") || exit 2
D=${D:-4}; W=${W:-1.5}
R=$OUT/r; mkdir -p "$R"
source /root/dc/env.sh
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .benchcarry/whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD:${PYTHONPATH:-} PYTHONUNBUFFERED=1 YOLO_OFFLINE=1 YOLO_AUTOINSTALL=False YOLO_CONFIG_DIR=/tmp/yolo
PY=python3; SPY=/tmp/site/bin/py-spy
cfg() {  # name cuda_graph max_batch max_wait_us algo_search infer_queue
  cat > "/tmp/$1.yaml" <<EOF
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
bench() {
  local name=$1 conf=$2; shift 2
  echo "=== $name: $* ($(date -u +%T))"
  timeout 200 $PY -m pipeline --log-level WARNING bench "/tmp/$conf.yaml" --duration "$D" --warmup "$W" \
    --json "$R/$name.json" --png "$R/$name.png" "$@" > "$R/$name.txt" 2> "$R/$name.err"
  echo "rc=$?"; cat "$R/$name.txt"; grep -v "^bench:\|onnxruntime:" "$R/$name.err" | tail -4
  tar czf "$OUT/results2.tar.gz" -C "$R" .
}
cfg g1 true 1 0 EXHAUSTIVE 4; cfg h8 false 8 1000 HEURISTIC 16; cfg g8q true 8 1000 EXHAUSTIVE 16; cfg h4 false 4 500 HEURISTIC 8
bench cam4_graph_b1_compare g1 --cameras 4 --rate 125 --compare
bench cam8_heur_b8_compare h8 --cameras 8 --rate 125 --compare
bench cam8_heur_b8_switch05 h8 --cameras 8 --rate 125 --switch-interval-ms 0.5
bench cam8_graph_b8_q16 g8q --cameras 8 --rate 125
bench cam4_heur_b4 h4 --cameras 4 --rate 125
bench cam8_flat_heur_b8_compare h8 --cameras 8 --compare
bench sweep8_heur h8 --cameras 8 --batch-sweep 1,2,4,8,16 --duration 3
echo "=== py-spy, 8 cameras at 125 fps, heuristic b8"
timeout 100 $SPY record --rate 250 --nonblocking -o "$R/pyspy_cam8.svg" -- $PY -m pipeline --log-level WARNING bench /tmp/h8.yaml \
  --cameras 8 --rate 125 --duration 8 --warmup "$W" > "$R/pyspy_cam8.txt" 2>&1; echo "rc=$?"; grep -v "onnxruntime:" "$R/pyspy_cam8.txt" | tail -8
timeout 60 $SPY record --rate 250 --gil --nonblocking -o "$R/pyspy_cam8_gil.svg" -- $PY -m pipeline --log-level WARNING bench /tmp/h8.yaml \
  --cameras 8 --rate 125 --duration 6 --warmup "$W" > "$R/pyspy_cam8_gil.txt" 2>&1; echo "rc=$?"
tar czf "$OUT/results2.tar.gz" -C "$R" .
