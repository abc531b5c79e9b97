"""`pipeline soak`: the judge of a run (pure) and a few seconds of the real command.

The 10-minute soak itself never runs in CI; docs/RELIABILITY.md records one.
"""

from __future__ import annotations

import json

import pytest

from pipeline.cli import main
from pipeline.soak import Sample, analyse
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


@pytest.mark.timeout(90)
def test_a_short_soak_writes_csv_json_and_plot(tmp_path, free_tcp_endpoint, capsys):
    config = write_config(tmp_path / "line.yaml", free_tcp_endpoint, fps=15)
    code = main(["soak", str(config), "--duration", "3", "--interval", "0.5", "--warmup", "1", "--out", str(tmp_path / "out")])
    assert code in (0, 1)  # three seconds cannot judge drift fairly; the files are the point
    result = json.loads((tmp_path / "out" / "soak.json").read_text())
    assert result["samples"] >= 5 and result["verdicts"] > 0 and result["gaps"] == 0
    assert (tmp_path / "out" / "soak.png").stat().st_size > 10_000
    rows = (tmp_path / "out" / "soak.csv").read_text().splitlines()
    assert rows[0].startswith("t_s,rss_mb,fds,threads") and len(rows) == result["samples"] + 1
    assert "soak" in capsys.readouterr().err  # progress lines
