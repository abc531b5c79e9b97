"""Measures the GPU path on the lab machine and writes one JSON (figures for docs/GPU.md).

    python3 tools/measure_gpu.py MODEL.onnx OUT.json [--extra NAME=MODEL.onnx ...]

What it times (p50/p99 in ms, warm-up first, many repetitions):
  * preprocess of a 1920x1080 BGR frame to 640x640: OpenCV on the CPU; the GPU path as the
    preprocess stage runs it (pinned copy + H2D + kernel + sync); the kernel alone and the
    pinned H2D alone (CUDA events);
  * ONNX Runtime CUDA with IO binding from a device slot, batch 1: plain, with
    cudnn_conv_algo_search EXHAUSTIVE, and with a CUDA graph; the CPU provider for scale;
  * each --extra model (e.g. the FP16 / INT8 conversions) the same way on CUDA;
  * the whole pipeline (synthetic camera -> GPU preprocess -> ORT CUDA -> rules -> ZeroMQ)
    with an independent subscriber: verdict latency per stage.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pycuda.driver as cuda

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.config.model import OnnxRuntimeCpuConfig, OnnxRuntimeCudaConfig
from pipeline.parts.backends.onnxruntime_backend import OnnxRuntimeBackend
from pipeline.parts.backends.onnxruntime_cuda import OnnxRuntimeCudaBackend
from pipeline.parts.gpu.cuda import CudaDevice
from pipeline.parts.gpu.device_buffers import DeviceTensor
from pipeline.parts.preprocessing.letterbox import Letterboxer
from pipeline.parts.preprocessing.letterbox_kernel import GpuLetterboxer


def stats(samples_s: list[float]) -> dict:
    a = np.asarray(samples_s) * 1e3
    return {"p50_ms": round(float(np.percentile(a, 50)), 4), "p99_ms": round(float(np.percentile(a, 99)), 4),
            "n": len(a)}


def timed(fn, n: int, warmup: int = 20) -> dict:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return stats(out)


def event_timed(device, fn, stream, n: int) -> dict:
    start, end = cuda.Event(), cuda.Event()
    out = []
    for i in range(n + 20):
        start.record(stream)
        fn()
        end.record(stream)
        end.synchronize()
        if i >= 20:
            out.append(end.time_since(start) / 1e3)
    return stats(out)


def preprocess(device: CudaDevice, n: int) -> dict:
    image = np.random.default_rng(0).integers(0, 256, (1080, 1920, 3), dtype=np.uint8)
    cpu_out = np.empty((3, 640, 640), np.float32)
    cpu = Letterboxer((640, 640))
    gpu = GpuLetterboxer(device, (640, 640))
    result = {"cpu_opencv": timed(lambda: cpu(image, cpu_out), n)}
    with device.active():
        slot = DeviceTensor.allocate((3, 640, 640), np.float32)
        result["gpu_stage_total"] = timed(lambda: gpu(image, slot), n)
        pinned, frame = gpu._staging_for(image.shape)
        kernel = gpu._kernels[np.dtype(np.float32)]
        geo_args = (frame.ptr, 1920, 1080, 3, slot.ptr, 640, 640, 640, 360, 0, 140, 3.0, 3.0, 114.0)
        result["kernel_only"] = event_timed(device, lambda: kernel.prepared_async_call(
            (20, 80), (32, 8, 1), gpu.stream, *geo_args), gpu.stream, n)
        result["h2d_pinned_1080p"] = event_timed(device, lambda: cuda.memcpy_htod_async(
            frame.allocation, pinned, gpu.stream), gpu.stream, n)
        slot.free()
    gpu.close()
    return result


def model_side(model: Path) -> int:
    import onnxruntime as ort

    side = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"]).get_inputs()[0].shape[3]
    return side if isinstance(side, int) else 640


def ort_cuda(device: CudaDevice, model: Path, n: int, **options) -> dict:
    from pipeline.parts.modelfile.model_info import ModelError

    try:
        return _ort_cuda(device, model, n, **options)
    except ModelError as exc:  # e.g. a graph ORT cannot capture: record why, measure the rest
        return {"error": str(exc)[-300:]}


def _ort_cuda(device: CudaDevice, model: Path, n: int, **options) -> dict:
    side = model_side(model)
    cfg = OnnxRuntimeCudaConfig(path=model, input_size=side, **options)
    backend = OnnxRuntimeCudaBackend.from_config(cfg, device=device)
    backend.warmup(5)
    with device.active():
        slot = DeviceTensor.allocate((3, side, side), backend.input_dtype)
    result = timed(lambda: backend.infer_tensors([slot]), n)
    with device.active():
        slot.free()
    backend.close()
    return result


def ort_cpu(model: Path, n: int) -> dict:
    backend = OnnxRuntimeBackend.from_config(OnnxRuntimeCpuConfig(path=model, input_size=640, threads=0))
    batch = np.zeros((1, 3, 640, 640), backend.input_dtype)
    return timed(lambda: backend.infer(batch), n, warmup=3)


def gate_on_cuda(fp32: Path, converted: Path) -> dict:
    from pipeline.service.convert.accuracy_gate import ValidationSet, run_gate

    side = model_side(fp32)
    result = run_gate(fp32, converted, ValidationSet.synthetic(200), (side, side), 0.02, 0.98,
                      backend="onnxruntime-cuda")
    return {"map50_fp32": result.map50_fp32, "map50_converted": result.map50_converted,
            "verdict_agreement": result.verdict_agreement, "passed": result.passed, "frames": result.frames}


def whole_pipeline(model: Path, frames: int, **model_options) -> dict:
    from pipeline.composition.app import Pipeline
    from pipeline.composition.assembly import build_parts
    from tests.pipeline_helpers import VerdictCollector, make_config

    endpoint = "tcp://127.0.0.1:5591"
    collector = VerdictCollector(endpoint)
    config = make_config(endpoint, cameras=1, fps=100, model={
        "path": str(model), "input_size": model_side(model), "backend": "onnxruntime-cuda", "preprocess": "gpu",
        **model_options},
        budget_ms=30)
    pipeline = Pipeline(config, build_parts(config), max_frames=frames)
    pipeline.start()
    pipeline.captures[0].thread.join(120)
    code = pipeline.shutdown(timeout_s=10)
    collector.wait_for({"cam0": frames}, timeout_s=10)
    verdicts = collector.verdicts["cam0"]
    backend = collector.heartbeats[-1].get("backend") if collector.heartbeats else None
    collector.close()
    lat = {k: stats([v["latency_ms"][k] / 1e3 for v in verdicts if k in v["latency_ms"]])
           for k in ("preprocess", "infer", "decide", "total")}
    outcomes = {o: sum(v["verdict"] == o for v in verdicts) for o in ("PASS", "FAIL", "NOT_INSPECTED", "ERROR")}
    return {"exit_code": code, "frames": frames, "verdicts": len(verdicts), "outcomes": outcomes,
            "heartbeat_backend": backend, "latency": lat,
            "exactly_once": sorted(v["frame_id"] for v in verdicts) == list(range(frames))}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--extra", action="append", default=[])
    ap.add_argument("--gate", action="append", default=[], help="NAME=FP32.onnx:CONVERTED.onnx, gate on CUDA")
    ap.add_argument("-n", type=int, default=500)
    args = ap.parse_args()
    device = CudaDevice.open(0)
    report = {"date": time.strftime("%Y-%m-%d %H:%M:%S"), "gpu": device.describe(), "model": str(args.model)}
    report["preprocess_1080p_to_640"] = preprocess(device, args.n)
    print(json.dumps(report, indent=1), flush=True)
    report["ort_cuda_batch1"] = {
        "default": ort_cuda(device, args.model, args.n),
        "exhaustive": ort_cuda(device, args.model, args.n, cudnn_conv_algo_search="EXHAUSTIVE"),
        "exhaustive_cuda_graph": ort_cuda(device, args.model, args.n, cudnn_conv_algo_search="EXHAUSTIVE",
                                          cuda_graph=True),
        "batch4_gathered": ort_cuda(device, args.model, args.n // 2, max_batch=4),
    }
    report["ort_cpu_batch1"] = ort_cpu(args.model, 30)
    for item in args.extra:
        name, path = item.split("=", 1)
        report[f"ort_cuda_{name}"] = {"default": ort_cuda(device, Path(path), args.n),
                                      "exhaustive_cuda_graph": ort_cuda(device, Path(path), args.n,
                                                                        cudnn_conv_algo_search="EXHAUSTIVE",
                                                                        cuda_graph=True)}
    for item in args.gate:
        name, paths = item.split("=", 1)
        fp32, converted = (Path(p) for p in paths.split(":"))
        report[f"gate_cuda_{name}"] = gate_on_cuda(fp32, converted)
    print(json.dumps(report, indent=1), flush=True)
    device.close()
    report["whole_pipeline_gpu"] = whole_pipeline(args.model, 300)
    args.out.write_text(json.dumps(report, indent=1))
    print(json.dumps(report["whole_pipeline_gpu"], indent=1))


if __name__ == "__main__":
    main()
