"""SIGHUP on a real `pipeline run`: new rules take effect with no frame lost; an invalid
file is rejected with the error logged and the old rules kept."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time

import pytest
import yaml

from tests.pipeline_helpers import VerdictCollector, assert_exactly_once, config_dict
from tests.waiting import first_value

pytestmark = pytest.mark.timeout(120)

# A low model threshold so the demo model reports detections on nearly every part; the
# rules then decide: FAIL on any detection, or ignore every class (always PASS).
STRICT = {"default": {"min_confidence": 0.0, "max_count": 0}}


class Daemon:
    """`pipeline run` as a subprocess, its stderr read by a thread as it comes."""

    def __init__(self, config_path):
        self.proc = subprocess.Popen([sys.executable, "-m", "pipeline", "run", str(config_path)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.lines: list[tuple[int, str]] = []  # (time.time_ns() when read, line)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stderr:
            self.lines.append((time.time_ns(), line))

    def wait_line(self, text: str, timeout_s: float = 30) -> int:
        """time.time_ns() when a line containing `text` was read."""
        hit = first_value(lambda: next((t for t, line in self.lines if text in line), None), timeout_s)
        if hit is not None:
            return hit
        raise AssertionError(f"no log line with {text!r}; stderr so far:\n{''.join(line for _, line in self.lines)}")

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(30)
        self._reader.join(5)
        return code


def write(path, endpoint: str, rules: dict) -> None:
    data = config_dict(endpoint, fps=20, model={"confidence": 0.01}, rules=rules)
    path.write_text(yaml.safe_dump(data))


def test_sighup_applies_new_rules_without_losing_a_frame(tmp_path, free_tcp_endpoint):
    config = tmp_path / "line.yaml"
    classes = list(_class_names(tmp_path, free_tcp_endpoint))
    write(config, free_tcp_endpoint, {"ignore_classes": classes})  # every part PASSes
    collector = VerdictCollector(free_tcp_endpoint)
    daemon = Daemon(config)
    try:
        assert collector.wait_for({"cam0": 40}, 60), daemon.lines
        write(config, free_tcp_endpoint, STRICT)
        sent_ns = time.time_ns()
        daemon.proc.send_signal(signal.SIGHUP)
        applied_ns = daemon.wait_line("new rules from")
        after = len(collector.verdicts["cam0"])
        assert collector.wait_for({"cam0": after + 15}, 60)
    finally:
        code = daemon.stop()
        collector.wait_for_last_heartbeat(timeout_s=10)  # the last verdicts reach the collector
        collector.close()
    assert code == 0
    verdicts = collector.verdicts["cam0"]
    assert_exactly_once(verdicts, len(verdicts))  # nothing dropped around the reload
    # Frames in flight at the swap may meet either rule book; the rest must meet theirs.
    before = [v for v in verdicts if v["t_capture_ns"] < sent_ns - 1_000_000_000]
    later = [v for v in verdicts if v["t_capture_ns"] > applied_ns]
    assert before and not any(defects(v) for v in before)
    assert later and any(defects(v) for v in later)


def defects(verdict: dict) -> bool:
    return any(r["code"] == "defect" for r in verdict["reasons"])


def test_sighup_with_an_invalid_file_keeps_the_old_rules(tmp_path, free_tcp_endpoint):
    config = tmp_path / "line.yaml"
    write(config, free_tcp_endpoint, STRICT)
    collector = VerdictCollector(free_tcp_endpoint)
    daemon = Daemon(config)
    try:
        assert collector.wait_for({"cam0": 5}, 60)
        text = config.read_text().replace("min_confidence: 0.0", "min_confidence: 7")
        config.write_text(text)
        daemon.proc.send_signal(signal.SIGHUP)
        rejected_ns = daemon.wait_line("reload rejected")
        config.write_text(text.replace("min_confidence: 7", "min_confidence: 0.0") + "\nrules_typo: 1\n")
        daemon.proc.send_signal(signal.SIGHUP)
        daemon.wait_line("rules_typo")
        after = len(collector.verdicts["cam0"])
        assert collector.wait_for({"cam0": after + 10}, 60)
        assert daemon.proc.poll() is None  # still running
    finally:
        code = daemon.stop()
        collector.wait_for_last_heartbeat(timeout_s=10)
        collector.close()
    assert code == 0
    log = "".join(line for _, line in daemon.lines)
    assert "rules.default.min_confidence" in log and "Traceback" not in log
    verdicts = collector.verdicts["cam0"]
    assert_exactly_once(verdicts, len(verdicts))
    later = [v for v in verdicts if v["t_capture_ns"] > rejected_ns]
    assert any(defects(v) for v in later)  # the strict rules still judge


def _class_names(tmp_path, endpoint: str) -> tuple[str, ...]:
    from pipeline.config import parse_config
    from pipeline.parts.backends import create_backend

    model = parse_config(yaml.safe_dump(config_dict(endpoint))).model
    backend = create_backend(model)
    try:
        return backend.class_names
    finally:
        backend.close()
