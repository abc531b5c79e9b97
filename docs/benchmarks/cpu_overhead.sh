#!/bin/bash
# The pipeline's own per-frame host work, measured on a CPU (docs/BENCHMARKS.md, "CPU overhead").
# The inference is made negligible (tools/make_overhead_model.py: a 64x64 detector whose
# ONNX Runtime run costs ~0.03 ms a frame), so what `pipeline bench` measures flat out
# with 8 cameras is the capture threads, stages, queues, decoding, rules and publishing.
#   bash docs/benchmarks/cpu_overhead.sh [BATCH] [bench options...]   # BATCH default 8
# e.g. `bash docs/benchmarks/cpu_overhead.sh 16`, `... 8 --switch-interval-ms 0.5`, `... 8 --rate 200`
set -e
batch=${1:-8}
shift || true
work=${WORK:-/tmp/cpu-overhead}
mkdir -p "$work"
python3 tools/make_overhead_model.py "$work/tiny.onnx" > /dev/null
cat > "$work/b$batch.yaml" <<EOF
cameras:
  - id: cam
    width: 160
    height: 120
    fps: 30
    source: {kind: synthetic, seed: 3, defect_probability: 0.5, realtime: false}
model:
  path: $work/tiny.onnx
  backend: onnxruntime
  input_size: 64
  threads: 1
  max_batch: $batch
rules:
  default: {min_confidence: 0.5, min_area_px2: 40, max_count: 0}
budget_ms: 30
queues:
  preprocess: {size: 16}
  infer: {size: 16}
  decide: {size: 16}
http: {enabled: false}
EOF
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
pipeline bench "$work/b$batch.yaml" --cameras 8 --duration 4 --warmup 1 --engine-s 1 "$@"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
