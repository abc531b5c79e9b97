"""`pipeline doctor [CONFIG ...]`: what this machine has, and whether a config can run here.

Prints the versions that decide behaviour, ONNX Runtime's execution providers, pycuda and
the GPUs, TensorRT, Aravis and OpenCV's video backends, then what each kind of config
needs (camera kinds, backends) and whether it is there, with the command that installs
what is missing. With CONFIG files it checks exactly what those need and exits 1 when
one cannot run here (2 when a file is not a valid config); without, it exits 0.
Every probe imports its library inside a function and reports a failure as text: the
command itself never needs a GPU or a camera SDK.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from importlib import metadata
from typing import Callable

ORT_GPU = "pip uninstall -y onnxruntime && pip install onnxruntime-gpu"
CAMERA = 'apt-get install gir1.2-aravis-0.8 && pip install ".[camera]"'
PYCUDA = 'pip install ".[gpu]" (needs the CUDA toolkit\'s nvcc the first time the kernel is compiled)'
TENSORRT = "pip install tensorrt-cu12, or run in the NGC TensorRT image (Dockerfile)"


@dataclass(frozen=True)
class Probe:
    name: str
    ok: bool
    detail: str
    install: str = ""


def register(sub) -> None:
    p = sub.add_parser("doctor", help="what this machine has (providers, GPU, TensorRT, Aravis, OpenCV) "
                                      "and whether CONFIG can run here")
    p.add_argument("configs", nargs="*", metavar="CONFIG", help="config files to check (exit 1 if one cannot run)")
    p.set_defaults(func=doctor)


def doctor(args: argparse.Namespace) -> int:
    from pipeline.service.commands import version_text

    print(version_text())
    probes = {name: probe() for name, probe in PROBES.items()}
    for line in _versions():
        print(f"  {line}")
    print("this machine:")
    for probe in probes.values():
        _show(probe)
    print("what each config kind needs:")
    for kind, needs in NEEDS.items():
        print(f"  {kind:<40} {_verdict([probes[n] for n in needs])}")
    return max((_check_config(path, probes) for path in args.configs), default=0)


def _show(probe: Probe) -> None:
    print(f"  {'ok  ' if probe.ok else 'MISS'} {probe.name:<13} {probe.detail}")
    if not probe.ok and probe.install:
        print(f"       install: {probe.install}")


def _verdict(needed: list[Probe]) -> str:
    missing = [p for p in needed if not p.ok]
    return "ready" if not missing else "missing " + ", ".join(p.name for p in missing)


def _check_config(path: str, probes: dict[str, Probe]) -> int:
    from pipeline.config import ConfigError, load_config

    try:
        config = load_config(path, require_model=True)
    except ConfigError as exc:
        print(f"{path}: cannot run here: {exc}")
        return 2
    missing = [probes[n] for n in config_needs(config) if not probes[n].ok]
    if not missing:
        print(f"{path}: can run here")
        return 0
    print(f"{path}: cannot run here:")
    for probe in missing:
        print(f"  needs {probe.name} ({probe.detail}); install: {probe.install}")
    return 1


def config_needs(config) -> list[str]:
    """The probes a config's cameras and model depend on."""
    needs = ["onnxruntime"]
    kinds = {cam.source.kind for cam in config.cameras}
    if "genicam" in kinds:
        needs.append("aravis")
    if "opencv" in kinds:
        needs.append("opencv-video")
    model = config.model
    if model.backend.value == "tensorrt":
        needs += ["tensorrt", "pycuda"]
    elif model.backend.value == "onnxruntime-cuda":
        needs.append("ort-cuda")
    if model.preprocess == "gpu":
        needs.append("pycuda")
    return list(dict.fromkeys(needs))


def _versions() -> list[str]:
    names = ("numpy", "opencv-python-headless", "opencv-python", "pyzmq", "pydantic", "onnxruntime",
             "onnxruntime-gpu", "pycuda", "tensorrt", "PyGObject")
    found = []
    for name in names:
        try:
            found.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            continue
    return [", ".join(found)]


def _probe_onnxruntime() -> Probe:
    try:
        import onnxruntime as ort
    except Exception as exc:  # noqa: BLE001 - a broken install raises more than ImportError
        return Probe("onnxruntime", False, f"does not import: {exc}", 'pip install .')
    return Probe("onnxruntime", True, f"{ort.__version__}, providers {', '.join(ort.get_available_providers())}")


def _probe_ort_cuda() -> Probe:
    try:
        import onnxruntime as ort
    except Exception:  # noqa: BLE001
        return Probe("ort-cuda", False, "onnxruntime does not import", ORT_GPU)
    ok = "CUDAExecutionProvider" in ort.get_available_providers()
    return Probe("ort-cuda", ok, "CUDAExecutionProvider " + ("present" if ok else "absent (CPU wheel)"), ORT_GPU)


def _probe_pycuda() -> Probe:
    try:
        import pycuda.driver as cuda

        cuda.init()
        gpus = [cuda.Device(i).name() for i in range(cuda.Device.count())]
    except Exception as exc:  # noqa: BLE001 - no pycuda, no driver, no GPU: all said the same way
        return Probe("pycuda", False, f"{type(exc).__name__}: {exc}".strip(), PYCUDA)
    return Probe("pycuda", bool(gpus), f"GPUs: {', '.join(gpus) or 'none visible'}", PYCUDA)


def _probe_tensorrt() -> Probe:
    try:
        import tensorrt as trt
    except Exception as exc:  # noqa: BLE001
        return Probe("tensorrt", False, f"does not import: {exc}", TENSORRT)
    return Probe("tensorrt", True, f"TensorRT {trt.__version__}")


def _probe_aravis() -> Probe:
    try:
        import gi

        gi.require_version("Aravis", "0.8")
        from gi.repository import Aravis
    except Exception as exc:  # noqa: BLE001 - ImportError, ValueError (typelib missing)
        return Probe("aravis", False, f"GenICam cameras unavailable: {exc}", CAMERA)
    return Probe("aravis", True, f"Aravis {Aravis._version} through gi (GigE Vision / USB3 Vision)")


def _probe_opencv() -> Probe:
    try:
        import cv2
        from cv2 import videoio_registry as vr
    except Exception as exc:  # noqa: BLE001
        return Probe("opencv-video", False, f"does not import: {exc}", "pip install .")
    names = list(dict.fromkeys(vr.getBackendName(b) for b in vr.getBackends()))
    ok = any(n in names for n in ("FFMPEG", "GSTREAMER", "V4L2"))
    return Probe("opencv-video", ok, f"OpenCV {cv2.__version__}, video backends: {', '.join(names) or 'none'}",
                 "pip install opencv-python-headless (its wheel brings FFmpeg and V4L2)")


PROBES: dict[str, Callable[[], Probe]] = {
    "onnxruntime": _probe_onnxruntime, "ort-cuda": _probe_ort_cuda, "pycuda": _probe_pycuda,
    "tensorrt": _probe_tensorrt, "aravis": _probe_aravis, "opencv-video": _probe_opencv,
}
NEEDS: dict[str, list[str]] = {
    "synthetic / replay cameras": [],
    "opencv cameras (USB, RTSP, HTTP, file)": ["opencv-video"],
    "genicam cameras (GigE/USB3 Vision)": ["aravis"],
    "model on the CPU (onnxruntime)": ["onnxruntime"],
    "model on ONNX Runtime CUDA": ["ort-cuda", "pycuda"],
    "model on TensorRT": ["tensorrt", "pycuda"],
}
