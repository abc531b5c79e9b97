"""`pipeline bench` end to end: the real pipeline, the naive loop and the batch sweep on
pre-rendered frames, the JSON and the PNG. Smoke-sized (well under a second of recorded
time per system); performance is measured by running the bench, never asserted here."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pipeline.core.contracts import RenderingSource
from pipeline.parts.sources.synthetic import SyntheticSource
from pipeline.service.bench.frames import PrerenderedSource, prerender
from pipeline.service.cli import main
from tests.pipeline_helpers import write_config

pytestmark = pytest.mark.timeout(120)

SYSTEM_KEYS = {"fps", "p50_ms", "p90_ms", "p99_ms", "p99_9_ms", "max_ms", "frames", "not_inspected",
               "not_inspected_rate", "budget_miss_rate", "stages_ms", "gpu_memory_mib", "backend"}


@pytest.fixture
def bench_config(tmp_path, free_tcp_endpoint):
    return write_config(tmp_path / "bench.yaml", free_tcp_endpoint, cameras=1, budget_ms=1000)


def test_bench_compares_with_the_naive_loop_and_writes_json_and_png(tmp_path, bench_config, capsys):
    out_json, out_png = tmp_path / "bench.json", tmp_path / "bench.png"
    code = main(["bench", str(bench_config), "--duration", "0.6", "--warmup", "0.2", "--cameras", "2",
                 "--rate", "15", "--compare", "--ring", "2", "--engine-s", "0.3", "--json", str(out_json),
                 "--png", str(out_png)])
    assert code == 0
    report = json.loads(out_json.read_text())
    for system in ("pipeline", "naive"):
        assert report[system].keys() >= SYSTEM_KEYS
        assert report[system]["frames"] > 0 and report[system]["p99_ms"] > 0
    assert {"preprocess", "infer", "decide", "publish"} <= report["pipeline"]["stages_ms"].keys()
    for part in ("stages_wait_ms", "stages_work_ms"):  # queue wait told apart from work
        assert {"preprocess", "infer", "decide", "publish"} <= report["pipeline"][part].keys()
    engine = report["engine"]  # the backend alone, in the same run, at the same batch size
    assert engine["rows"][0]["batch"] == 1 and engine["rows"][0]["fps"] > 0
    assert engine["pipeline_over_engine"] > 0
    assert report["meta"]["cameras"] == 2 and report["meta"]["date"]
    assert ("ultralytics" in report) != ("ultralytics" in report["skipped"])
    assert set(report["ratios"]["naive"]) == {"throughput_x", "p99_lower_x"}
    assert out_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = capsys.readouterr().out
    assert "pipeline" in table and "naive" in table and "pipeline vs naive" in table
    assert "backend alone" in table


def test_batch_sweep_gathers_frames_of_several_cameras_into_one_batch(tmp_path, bench_config):
    """Flat out, three cameras keep the infer queue full: batches fill up across cameras."""
    out_json = tmp_path / "sweep.json"
    code = main(["bench", str(bench_config), "--duration", "0.6", "--warmup", "0.2", "--cameras", "3",
                 "--ring", "2", "--batch-sweep", "1,4", "--engine-s", "0", "--json", str(out_json)])
    assert code == 0
    rows = {row["max_batch"]: row for row in json.loads(out_json.read_text())["batch_sweep"]}
    assert rows[1]["batch_sizes"].keys() == {"1"} and rows[1]["frames"] > 0
    assert rows[4]["mean_batch"] > 1 and rows[4]["mixed_camera_batches"] > 0
    assert max(int(size) for size in rows[4]["batch_sizes"]) <= 4


@pytest.mark.parametrize("argv, message", [
    (["--batch-sweep", "1,x"], "comma-separated integers"),
    (["--batch-sweep", "0,2"], "1..64"),
    (["--rate", "-5"], "positive number"),
])
def test_bad_options_are_named(bench_config, capsys, argv, message):
    with pytest.raises(SystemExit) as exited:
        main(["bench", str(bench_config), *argv])
    assert exited.value.code == 2
    assert message in capsys.readouterr().err


def test_missing_model_is_a_clear_error_not_a_traceback(tmp_path, free_tcp_endpoint, capsys):
    config = write_config(tmp_path / "bad.yaml", free_tcp_endpoint, model={"path": str(tmp_path / "none.onnx")})
    assert main(["bench", str(config), "--duration", "0.2"]) == 2
    assert "none.onnx" in capsys.readouterr().err


def test_prerendered_source_replays_its_ring_and_stamps_due_times():
    frames = [SyntheticSource(64, 48, seed=3).render(k) for k in range(2)]
    flat = PrerenderedSource(frames, fps=None)
    flat.open()
    assert [flat.read(0.1).image is f.image for f in frames * 2] == [True] * 4
    paced = PrerenderedSource(frames, fps=1000)
    paced.open()
    stamps = [paced.read(0.5).camera_ts_ns for _ in range(3)]
    assert stamps[1] - stamps[0] == stamps[2] - stamps[1] == 1_000_000


def test_prerender_renders_a_synthetic_camera_out_of_order_and_reads_any_other_source():
    rendering = SyntheticSource(64, 48, seed=3)  # never opened, never read
    assert isinstance(rendering, RenderingSource)
    assert [f.part_id for f in prerender(rendering, 2)] == [rendering.render(k).part_id for k in range(2)]
    ring = [SyntheticSource(64, 48, seed=5).render(k) for k in range(3)]
    replayed = PrerenderedSource(ring, fps=None)  # no `render`: read in order
    assert not isinstance(replayed, RenderingSource)
    replayed.open()
    assert [f.image is r.image for f, r in zip(prerender(replayed, 3), ring)] == [True] * 3


def test_a_batch_the_infer_queue_can_never_fill_is_refused(tmp_path, free_tcp_endpoint, capsys):
    config = write_config(tmp_path / "big.yaml", free_tcp_endpoint, model={"max_batch": 8},
                          queues={"infer": {"size": 4}})
    assert main(["bench", str(config), "--duration", "0.2"]) == 2
    assert "queues.infer.size to at least 7" in capsys.readouterr().err


def test_prerendered_frames_are_written_into_a_slot_once_then_reused():
    """The bench's source takes the capture stage's slot path; the copy happens on a slot's
    first visit only, so rendering and copying stay out of the measured window."""
    source = SyntheticSource(64, 48, realtime=False)
    ring = [source.render(k) for k in range(2)]
    replay = PrerenderedSource(ring, fps=None)
    replay.open()
    slots = [np.zeros((48, 64, 3), np.uint8) for _ in range(2)]
    first = [replay.read_into(slot, 0.1) for slot in slots]
    assert all(got.image is slot for got, slot in zip(first, slots))
    assert np.array_equal(slots[0], ring[0].image) and np.array_equal(slots[1], ring[1].image)
    slots[0][:] = 0  # were it copied again, the ring frame would come back
    again = replay.read_into(slots[0], 0.1)
    assert again.image is slots[0] and not slots[0].any() and again.truth is ring[0].truth
