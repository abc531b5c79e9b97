"""Quality gate of the committed demo model: the real pipeline, run by the `pipeline eval`
machinery on a held-out seed of the synthetic camera, must FAIL defective parts and
PASS good ones at the rates issue 3 promised (engines/demo.md has the full numbers).

Real threads, queues, ONNX Runtime and PUB socket; only timing is taken out of the
picture (see `pipeline.service.evaluation`). CI evaluates here; it never trains.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.config import load_config
from pipeline.service.cli import main
from pipeline.service.evaluation import evaluate

ROOT = Path(__file__).resolve().parents[1]
DEMO_CONFIG = ROOT / "configs" / "demo.yaml"
HELD_OUT_SEED = 3  # training used seeds 100..599, validation 20..29
FRAMES = 300

pytestmark = pytest.mark.skipif(not (ROOT / "engines" / "demo.onnx").exists(), reason="engines/demo.onnx missing")


@pytest.fixture(scope="module")
def report() -> dict:
    return evaluate(load_config(DEMO_CONFIG), FRAMES, seed=HELD_OUT_SEED)


@pytest.mark.timeout(120)
def test_every_frame_gets_an_inspected_verdict(report):
    parts = report["parts"]
    assert parts["defective"] + parts["good"] == FRAMES * len(report["run"]["cameras"])
    for kind in ("defective", "good"):
        outcomes = parts[f"{kind}_outcomes"]
        assert outcomes["NOT_INSPECTED"] == 0 and outcomes["ERROR"] == 0, outcomes
    assert report["run"]["exit_code"] == 0 and report["run"]["tap_failures"] == 0


@pytest.mark.timeout(120)
def test_defective_parts_fail(report):
    assert report["parts"]["defective"] > 100  # about half of the parts carry defects
    assert report["parts"]["defective_fail_rate"] >= 0.98, report["parts"]


@pytest.mark.timeout(120)
def test_good_parts_pass(report):
    assert report["parts"]["good"] > 100
    assert report["parts"]["good_pass_rate"] >= 0.99, report["parts"]


@pytest.mark.timeout(120)
def test_every_class_is_found(report):
    # The per-class gate of issue 3 is 0.95; engines/demo.md reports where the model
    # stands. This guards against a class silently breaking (a wrong names order, a
    # letterbox mismatch) without making a few faint scratches flake the suite.
    for name, c in report["classes"].items():
        assert c["support_min_size"] > 30, (name, c)
        assert c["recall_min_size"] >= 0.85 and c["precision"] >= 0.85, (name, c)


@pytest.mark.timeout(60)
def test_eval_command_writes_the_documented_json(tmp_path):
    out = tmp_path / "eval.json"
    code = main(["--log-level", "WARNING", "eval", str(DEMO_CONFIG), "--frames", "20", "--seed", "5",
                 "--json", str(out), "--annotate", str(tmp_path / "img")])
    assert code == 0
    data = json.loads(out.read_text())
    assert set(data["classes"]) == {"scratch", "spot", "crack"}
    for c in data["classes"].values():
        assert {"precision", "recall", "support"} <= set(c)
    assert {"defective", "good", "defective_fail_rate", "good_pass_rate"} <= set(data["parts"])
    assert data["parts"]["defective"] + data["parts"]["good"] == 20
    assert any(p.suffix == ".png" for p in (tmp_path / "img").iterdir())


def test_eval_refuses_a_camera_without_ground_truth(tmp_path):
    config = tmp_path / "replay.yaml"
    text = DEMO_CONFIG.read_text().replace("kind: synthetic", f"kind: replay\n      path: {tmp_path}")
    for key in ("seed", "defect_probability", "max_defects", "classes"):
        text = "\n".join(line for line in text.splitlines() if not line.strip().startswith(f"{key}:"))
    config.write_text(text.replace("../engines/demo.onnx", str(ROOT / "engines" / "demo.onnx")))
    assert main(["eval", str(config), "--frames", "5"]) == 2
