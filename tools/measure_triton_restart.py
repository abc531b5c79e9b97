"""`pipeline run` with `backend: triton` against the bundled server, the server killed and
restarted mid-run, and the same frames through the local backend (figures for
docs/SCALING.md); prints one JSON object.

    python3 tools/measure_triton_restart.py [--frames 300] [--kill-at 90] [--down-s 2]

Starts the server from tests/triton_server.py (its cached 3.13 environment), exports
engines/demo.onnx with `pipeline export-triton --platform python`, runs
configs/demo-triton.yaml (pointed at that server) and configs/demo.yaml as real
`pipeline run` processes, and counts what an independent subscriber received.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tools.triton_measurement import result_head, started_server  # noqa: E402

from tests.pipeline_helpers import VerdictCollector  # noqa: E402
from tests.ports import free_port  # noqa: E402
from tests.triton_server import export_python_repository  # noqa: E402


def run(config: dict, work: Path, frames: int, on_frame=None) -> list[dict]:
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    config = {**config, "publisher": {"endpoint": endpoint, "await_subscriber_ms": 3000},
              "http": {"port": 0}, "logging": {"level": "WARNING"}}
    path = work / f"config-{time.monotonic_ns()}.yaml"
    path.write_text(yaml.safe_dump(config))
    collector = VerdictCollector(endpoint)
    proc = subprocess.Popen([sys.executable, "-m", "pipeline", "run", str(path), "--frames", str(frames)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        while proc.poll() is None:
            if on_frame is not None:
                on_frame(len(collector.verdicts["cam0"]))
            threading.Event().wait(0.02)
        collector.wait_for({"cam0": frames}, 10)
        return list(collector.verdicts["cam0"])
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(10)
        collector.close()


def summary(verdicts: list[dict]) -> dict:
    outcomes = Counter(f"{v['verdict']}/{v['reasons'][0]['code']}" if v["verdict"] in ("ERROR", "NOT_INSPECTED")
                       else v["verdict"] for v in verdicts)
    ids = sorted(v["frame_id"] for v in verdicts)
    return {"verdicts": len(verdicts), "each_frame_once": ids == list(range(len(ids))), "outcomes": dict(outcomes)}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--frames", type=int, default=300)
    p.add_argument("--kill-at", type=int, default=90)
    p.add_argument("--down-s", type=float, default=2.0)
    args = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="triton-restart-"))
    export_python_repository(work / "repo", ROOT / "engines" / "demo.onnx")
    server = started_server(work / "repo", work / "tritonserver.log")
    demo = yaml.safe_load((ROOT / "configs" / "demo.yaml").read_text())
    demo["model"]["path"] = str(ROOT / "engines" / "demo.onnx")
    remote = yaml.safe_load((ROOT / "configs" / "demo-triton.yaml").read_text())
    remote["model"] = {**remote["model"], "path": demo["model"]["path"],
                       "triton": {**remote["model"]["triton"], "url": server.grpc_url}}
    events: dict[str, float] = {}

    def outage(seen: int) -> None:
        if seen >= args.kill_at and "killed" not in events:
            server.kill()
            events["killed"] = time.monotonic()
        elif "killed" in events and "restarted" not in events and time.monotonic() - events["killed"] > args.down_s:
            server.start()
            events["restarted"] = time.monotonic()

    try:
        local = run(demo, work, args.frames)
        triton = run(remote, work, args.frames, outage)
    finally:
        server.stop()
    both = [f for f in range(args.frames) if {by(local, f)["verdict"], by(triton, f)["verdict"]} <= {"PASS", "FAIL"}]
    same = sum(by(local, f)["verdict"] == by(triton, f)["verdict"] for f in both)
    print(json.dumps({**result_head(), "local": summary(local), "triton": summary(triton),
                      "down_s": round(events["restarted"] - events["killed"], 2) if "restarted" in events else None,
                      "compared_frames": len(both), "same_verdict": same}, indent=2))
    shutil.rmtree(work, ignore_errors=True)


def by(verdicts: list[dict], frame_id: int) -> dict:
    return next(v for v in verdicts if v["frame_id"] == frame_id)


if __name__ == "__main__":
    main()
