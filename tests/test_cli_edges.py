"""The CLI's edges as a new user meets them: --version, global options after the
subcommand, durations that are refused, exit codes that match the help, key files that
are mixed up, a model that is not where the config says. In-process through `main`."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from pipeline.service.cli import build_parser, main
from tests.pipeline_helpers import ROOT

pytestmark = pytest.mark.timeout(60)


def exit_code(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exc:  # argparse refuses with 2 before any command runs
        return int(exc.code)


def test_version_names_the_package_and_the_runtime(capsys):
    assert exit_code(["--version"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("inspection-pipeline ") and "Python" in out and "onnxruntime" in out


def test_log_level_is_accepted_after_the_subcommand_too():
    after = build_parser().parse_args(["run", "configs/demo.yaml", "--log-level", "DEBUG"])
    before = build_parser().parse_args(["--log-level", "ERROR", "run", "configs/demo.yaml"])
    neither = build_parser().parse_args(["run", "configs/demo.yaml"])
    assert (after.log_level, before.log_level, neither.log_level) == ("DEBUG", "ERROR", None)


@pytest.mark.parametrize("value", ["0", "-3", "nan", "inf", "soon"])
@pytest.mark.parametrize("command", [["run", "configs/demo.yaml", "--duration"],
                                     ["soak", "configs/demo.yaml", "--duration"],
                                     ["soak", "configs/demo.yaml", "--interval"],
                                     ["subscribe", "tcp://127.0.0.1:1", "--timeout"],
                                     ["health", "--timeout"]])
def test_durations_that_never_end_or_end_at_once_are_refused(capsys, command, value):
    assert exit_code([*command, value]) == 2
    assert "expected" in capsys.readouterr().err


def test_health_with_a_malformed_url_says_so_without_a_traceback(capsys):
    assert exit_code(["health", "--url", "notaurl"]) == 1
    err = capsys.readouterr().err
    assert "not an http:// URL" in err and "Traceback" not in err


def test_subscribe_help_states_the_exit_codes_of_the_timeout(capsys):
    with pytest.raises(SystemExit):
        main(["subscribe", "--help"])
    assert "exit 0, or 1 if --count" in " ".join(capsys.readouterr().out.split())


@pytest.mark.parametrize("name", ["../evil", "a/b", "..", ".hidden", ""])
def test_curve_keys_refuses_names_that_leave_the_folder(tmp_path, capsys, name):
    assert exit_code(["curve-keys", str(tmp_path / "keys"), name]) == 2
    assert "not a key name" in capsys.readouterr().err
    assert not any(tmp_path.rglob("*.key*"))


def test_subscribe_names_a_public_key_given_where_the_secret_one_goes(tmp_path, capsys):
    assert main(["curve-keys", str(tmp_path), "server"]) == 0
    assert main(["curve-keys", str(tmp_path), "gw1"]) == 0
    server, gw_public = tmp_path / "server.key", tmp_path / "gw1.key"
    assert main(["subscribe", "tcp://127.0.0.1:1", "--curve-server-key", str(server),
                 "--curve-client-keys", str(gw_public), "--timeout", "1"]) == 2
    err = capsys.readouterr().err
    assert "holds only a public key" in err and "key_secret" in err and "chmod" not in err
    assert main(["subscribe", "tcp://127.0.0.1:1", "--curve-server-key", str(tmp_path / "server.key_secret"),
                 "--curve-client-keys", str(tmp_path / "gw1.key_secret"), "--timeout", "1"]) == 2
    assert "holds a secret key" in capsys.readouterr().err


def test_a_missing_model_names_the_config_the_key_and_every_place_searched(tmp_path, capsys, monkeypatch):
    config = tmp_path / "conf" / "line.yaml"
    config.parent.mkdir()
    config.write_text((ROOT / "configs" / "demo.yaml").read_text().replace("../engines/demo.onnx", "models/x.onnx"))
    monkeypatch.chdir(tmp_path)
    assert main(["run", str(config), "--frames", "1"]) == 2
    err = capsys.readouterr().err
    assert str(config) in err and "model.path" in err
    assert str(tmp_path / "conf" / "models" / "x.onnx") in err and str(tmp_path / "models" / "x.onnx") in err


@pytest.mark.timeout(120)
@pytest.mark.parametrize("name", ["demo.yaml", "camera-usb.yaml", "camera-rtsp.yaml", "camera-gige.yaml"])
def test_the_shipped_configs_find_their_model_from_any_folder(tmp_path, name):
    # check-config opens the model (and binds no port, unlike `run` with the demo's fixed ones)
    proc = subprocess.run([sys.executable, "-m", "pipeline", "check-config", str(ROOT / "configs" / name)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=100,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr
    assert f"model: {ROOT / 'engines' / 'demo.onnx'}" in proc.stdout


def test_bench_says_first_whether_latency_or_capacity_is_measured():
    from pipeline.service.commands.bench_command import run_kind

    assert run_kind(30.0, 2).startswith("latency run: 2 camera(s) at 30 frames/s")
    capacity = run_kind(None, 1)
    assert capacity.startswith("capacity run") and "queueing" in capacity and "--rate" in capacity
