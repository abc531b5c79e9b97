#!/usr/bin/env bash
# The GPU lab matrix of docs/BENCHMARKS.md. MODE=cpu runs the same matrix here, tiny, as a dry run.
set -u
MODEL=$(realpath "${1:?usage: $0 MODEL.onnx  (a YOLOv8n 640x640 ONNX export; docs/BENCHMARKS.md used random weights)}") || exit 2
MODE=${MODE:-gpu}
D=${D:-4}; W=${W:-1.5}
R=${OUT:-/tmp/bench/out}/r; mkdir -p "$R"
if [ "$MODE" = gpu ]; then
  source /root/dc/env.sh
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .benchcarry/whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD:${PYTHONPATH:-}
  PY=python3; SPY=/tmp/site/bin/py-spy
  BACKEND=onnxruntime-cuda; PRE=gpu; SIZE=640; W1=1920; H1=1080
else
  PY=.venv/bin/python; SPY=.venv/bin/py-spy
  BACKEND=onnxruntime; PRE=cpu; SIZE=320; W1=640; H1=480
fi
export PYTHONUNBUFFERED=1 YOLO_OFFLINE=1 YOLO_AUTOINSTALL=False YOLO_CONFIG_DIR=/tmp/yolo
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$R/gpu.txt" 2>&1
$PY -c "import onnxruntime as o, sys; print(sys.version, o.__version__, o.get_available_providers())" > "$R/env.txt" 2>&1

cfg() {  # name cuda_graph max_batch max_wait_us
  cat > "/tmp/$1.yaml" <<EOF
cameras:
  - id: cam
    source: {kind: synthetic, seed: 1}
    width: $W1
    height: $H1
    fps: 30
model:
  path: $MODEL
  backend: $BACKEND
  input_size: $SIZE
  preprocess: $PRE
$([ "$BACKEND" = onnxruntime-cuda ] && printf '  cuda_graph: %s\n  cudnn_conv_algo_search: EXHAUSTIVE\n' "$2")
  max_batch: $3
  max_wait_us: $4
  threads: 0
budget_ms: 30
publisher: {endpoint: "tcp://127.0.0.1:5599"}
EOF
  [ "$MODE" = gpu ] || sed -i 's/cuda_graph: true/cuda_graph: false/' "/tmp/$1.yaml"
}
bench() {  # name config args...
  local name=$1 conf=$2; shift 2
  echo "=== $name: $* ($(date -u +%T))"
  timeout 240 $PY -m pipeline --log-level WARNING bench "/tmp/$conf.yaml" --duration "$D" --warmup "$W" \
    --json "$R/$name.json" --png "$R/$name.png" "$@" > "$R/$name.txt" 2> "$R/$name.err"
  echo "rc=$?"; cat "$R/$name.txt"; grep -v "^bench:" "$R/$name.err" | tail -5
  tar czf "${OUT:-/tmp/bench/out}/results.tar.gz" -C "$R" .  # what is done so far comes back even on a timeout
}
cfg g1 true 1 0; cfg n1 false 1 0; cfg g8 true 8 1000; cfg n8 false 8 1000; cfg g4 true 4 500
bench cam1_graph_compare g1 --cameras 1 --rate 60 --compare
bench cam1_nograph n1 --cameras 1 --rate 60
bench cam4_graph_b1_compare g1 --cameras 4 --rate 125 --compare
bench cam4_graph_b4 g4 --cameras 4 --rate 125
bench cam8_graph_b8_compare g8 --cameras 8 --rate 125 --compare
bench cam8_graph_b1 g1 --cameras 8 --rate 125
bench cam8_nograph_b8 n8 --cameras 8 --rate 125
bench cam8_graph_b8_switch05 g8 --cameras 8 --rate 125 --switch-interval-ms 0.5
bench cam8_flat_graph_b8_compare g8 --cameras 8 --compare
bench sweep8_nograph n8 --cameras 8 --batch-sweep 1,2,4,8 --duration 3
bench sweep8_graph g8 --cameras 8 --batch-sweep 1,2,4,8 --duration 3
echo "=== py-spy, 8 cameras at 125 fps"
timeout 120 $SPY record --rate 200 --nonblocking -o "$R/pyspy_cam8.svg" -- $PY -m pipeline --log-level WARNING bench /tmp/g8.yaml \
  --cameras 8 --rate 125 --duration "$D" --warmup "$W" > "$R/pyspy_cam8.txt" 2>&1; echo "rc=$?"; tail -12 "$R/pyspy_cam8.txt"
tar czf "${OUT:-/tmp/bench/out}/results.tar.gz" -C "$R" . && rm -rf "$R"
