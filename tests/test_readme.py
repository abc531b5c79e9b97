"""The README's promises stay true: its test command is what CI runs, its demo command
names a config that exists and validates."""

import re
from pathlib import Path

from pipeline.config import load_config

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def first_screen_commands() -> list[str]:
    head = "\n".join(README.splitlines()[:30])
    return re.findall(r"```bash\n(.+?)\n```", head)


def test_first_screen_has_the_demo_and_the_test_command():
    demo, tests = first_screen_commands()[:2]
    assert "pip install ." in demo and "pipeline run configs/demo.yaml" in demo
    assert 'pip install ".[test]"' in tests and "python -m pytest" in tests


def test_ci_runs_the_readme_test_command():
    tests = first_screen_commands()[1]
    run_lines = (ROOT / ".ci" / "run").read_text().splitlines()
    assert tests in run_lines  # the whole command line, Debian packages and venv included


def test_demo_config_is_valid():
    config = load_config(ROOT / "configs" / "demo.yaml")
    assert all(c.source.kind == "synthetic" for c in config.cameras)
