"""What machine a figure was measured on, and how much GPU memory this process holds.

Owns the facts every published figure carries (date, CPU, cores, GPU, library versions)
and the one GPU-memory probe: `nvidia-smi`'s per-process usage, which sees every CUDA
allocator in the process (ONNX Runtime's arena, pycuda buffers, CUDA graphs) without
importing any of them. Where there is no NVIDIA driver the answer is None, not 0.
"""

from __future__ import annotations

import datetime
import os
import platform
import shutil
import subprocess
import sys

SMI_TIMEOUT_S = 5.0


def _smi(*query: str) -> list[list[str]]:
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        out = subprocess.run(["nvidia-smi", *query, "--format=csv,noheader,nounits"], capture_output=True,
                             text=True, timeout=SMI_TIMEOUT_S, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [[cell.strip() for cell in line.split(",")] for line in out.splitlines() if line.strip()]


def gpu_memory_mib(pid: int | None = None) -> float | None:
    """MiB of GPU memory held by `pid` (this process), or None where it cannot be known.

    In a container nvidia-smi may list no processes (another PID namespace); then the
    device's whole used memory is the best answer, and on a dedicated bench machine it
    is this process's."""
    pid = os.getpid() if pid is None else pid
    rows = _smi("--query-compute-apps=pid,used_memory")
    mine = [float(mib) for p, mib in rows if p == str(pid) and _is_number(mib)]
    if mine:
        return sum(mine)
    used = [float(row[0]) for row in _smi("--query-gpu=memory.used") if row and _is_number(row[0])]
    return sum(used) if used else None


def _is_number(text: str) -> bool:
    return text.replace(".", "", 1).isdigit()


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def describe_machine() -> dict:
    """Date, host and versions, for the JSON and for BENCHMARKS.md."""
    import cv2
    import numpy
    import onnxruntime

    gpus = [f"{name} ({mib} MiB)" for name, mib in _smi("--query-gpu=name,memory.total")]
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "host": platform.node(),
        "cpu": _cpu_model(),
        # the platform, not a part: os has sched_getaffinity on Linux only
        "cpu_cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "gpus": gpus,
        "python": sys.version.split()[0],
        "switch_interval_ms": round(sys.getswitchinterval() * 1000, 3),
        "versions": {"numpy": numpy.__version__, "opencv": cv2.__version__, "onnxruntime": onnxruntime.__version__,
                     "onnxruntime_providers": onnxruntime.get_available_providers()},
    }
