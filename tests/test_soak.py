"""`pipeline soak`: the judge of a run (pure) and a few seconds of the real command.

The 10-minute soak itself never runs in CI; docs/RELIABILITY.md records one.
"""

from __future__ import annotations

import json

import pytest

from pipeline.service.cli import main
from pipeline.service.soak.judgement import Sample, analyse
from tests.pipeline_helpers import write_config


def samples(rss_mb_per_h: float = 0.0, p99_end: float = 10.0, fds_end: int = 30, gaps: int = 0) -> list[Sample]:
    out = []
    for i in range(121):  # 10 minutes every 5 s
        t = i * 5.0
        p99 = 10.0 + (p99_end - 10.0) * t / 600
        out.append(Sample(t, 200 + rss_mb_per_h * t / 3600, fds_end if i == 120 else 30, 16, 5.0, p99, 30.0, i * 150, gaps))
    return out


def test_a_flat_run_meets_every_target():
    report = analyse(samples(), warmup_s=60)
    assert report.ok and report.rss_mb_per_h == pytest.approx(0, abs=1e-6) and report.p99_drift == 0


@pytest.mark.parametrize("bad, target", [
    ({"rss_mb_per_h": 20.0}, "rss growth <= 5 MB/h"),
    ({"p99_end": 14.0}, "p99 drift < 10%"),
    ({"fds_end": 31}, "no fd growth"),
    ({"gaps": 1}, "no seq gaps"),
])
def test_each_kind_of_decay_misses_its_target(bad, target):
    report = analyse(samples(**bad), warmup_s=60)
    assert not report.ok and not report.passed[target]
    assert sum(not met for met in report.passed.values()) == 1


@pytest.mark.parametrize("minutes, warmup_s, why", [
    (10, 580, "only 20 s after warm-up"),  # shorter than the judged minimum
    (10, 500, "overlap"),  # first and last minute are one window
])
def test_a_run_too_short_to_judge_says_so_and_is_not_ok(minutes, warmup_s, why):
    report = analyse(samples()[: minutes * 12 + 1], warmup_s=warmup_s, min_judged_s=20 if why == "overlap" else 300)
    assert not report.ok and any(why in reason for reason in report.cannot_judge)
    assert report.rss_mb_per_h != report.rss_mb_per_h or why == "overlap"  # no slope from seconds


def test_too_few_verdicts_cannot_be_judged():
    quiet = [Sample(s.t_s, s.rss_mb, s.fds, s.threads, s.p50_ms, s.p99_ms, 0.1, int(s.t_s / 10), 0) for s in samples()]
    report = analyse(quiet, warmup_s=60)
    assert not report.ok and any("verdicts in the first" in reason for reason in report.cannot_judge)


@pytest.mark.timeout(90)
def test_a_short_soak_writes_csv_json_and_plot_and_cannot_judge(tmp_path, free_tcp_endpoint, capsys):
    config = write_config(tmp_path / "line.yaml", free_tcp_endpoint, fps=15)
    code = main(["soak", str(config), "--duration", "3", "--interval", "0.5", "--warmup", "1", "--out", str(tmp_path / "out")])
    captured = capsys.readouterr()
    assert code == 1 and "cannot judge: only" in captured.out  # three seconds say nothing
    result = json.loads((tmp_path / "out" / "soak.json").read_text())
    assert result["ok"] is False and result["rss_mb_per_h"] is None
    assert result["samples"] >= 5 and result["verdicts"] > 0 and result["gaps"] == 0
    assert (tmp_path / "out" / "soak.png").stat().st_size > 10_000
    rows = (tmp_path / "out" / "soak.csv").read_text().splitlines()
    assert rows[0].startswith("t_s,rss_mb,fds,threads") and len(rows) == result["samples"] + 1
    assert "soak" in captured.err  # progress lines

