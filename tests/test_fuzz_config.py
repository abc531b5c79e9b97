"""Hypothesis against the config loader and `pipeline check-config`.

Promises: whatever the YAML says, loading either succeeds or raises `ConfigError` (the
CLI turns that into exit 2 and one message on stderr, never a traceback), and the
message names the key that is wrong.
"""

from __future__ import annotations

import contextlib
import io
import math
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.config import ConfigError, parse_config
from pipeline.service.cli import main
from tests.pipeline_helpers import config_dict

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
BASE = config_dict("tcp://127.0.0.1:5555", cameras=2)
BASE["rules"] = {"default": {"min_confidence": 0.5}, "classes": {"scratch": {"max_count": 1}}}
BASE["queues"] = {"infer": {"size": 4, "overflow": "drop_oldest"}}
BASE["cameras"][0].update(mm_per_px=0.1, stall_timeout_s=2.0)
BASE["cameras"][1].update(mm_per_px=0.1)
BASE["rules"]["classes"]["spot"] = {"min_area_mm2": 1.5}

junk = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6,
)


def key_paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    """Every path to a value in the config tree (dict keys and list indices)."""
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    paths = []
    for key, value in items:
        paths.append(prefix + (key,))
        paths += key_paths(value, prefix + (key,))
    return paths


def replaced(tree: Any, path: tuple, value: Any) -> Any:
    if not path:
        return value
    copy = dict(tree) if isinstance(tree, dict) else list(tree)
    copy[path[0]] = replaced(tree[path[0]], path[1:], value)
    return copy


def load(data: Any) -> str | None:
    """The error message, or None when the config is valid."""
    try:
        parse_config(yaml.safe_dump(data), source="line.yaml")
    except ConfigError as exc:
        return str(exc)
    return None


@FUZZ
@given(st.sampled_from(key_paths(BASE)), junk)
def test_a_bad_value_anywhere_is_refused_naming_its_key(path, value):
    message = load(replaced(BASE, path, value))
    if message is not None:
        dotted = ".".join(map(str, path))
        # A value may be refused where it sits, inside it, or by a whole-file check that
        # names the key it is about (e.g. duplicate camera ids).
        assert dotted in message or str(path[-1]) in message, message


FREE_MAPS = {("rules", "classes")}  # keys there are class names, checked against the model


@FUZZ
@given(st.sampled_from([p for p in key_paths(BASE) if isinstance(p[-1], str) and p not in FREE_MAPS] + [()]),
       st.from_regex(r"[a-z_]{1,12}", fullmatch=True), junk)
def test_an_unknown_key_anywhere_is_refused_by_its_dotted_path(path, key, value):
    node = BASE
    for part in path:
        node = node[part]
    if not isinstance(node, dict) or key in node:
        return  # only mappings take keys, and replacing a known key is the other test
    message = load(replaced(BASE, path, {**node, key: value}))
    assert message is not None, f"unknown key {key!r} under {path} was accepted"
    assert ".".join(map(str, (*path, key))) in message and "unknown key" in message


@FUZZ
@given(st.text(max_size=200))
def test_any_text_loads_or_gives_a_config_error(text):
    try:
        parse_config(text)
    except ConfigError as exc:
        assert str(exc)


@FUZZ
@given(st.sampled_from([p for p in key_paths(BASE) if isinstance(p[-1], str)]),
       st.sampled_from([math.nan, math.inf, -math.inf]))
def test_nan_and_inf_are_refused_wherever_a_number_goes(path, value):
    message = load(replaced(BASE, path, value))
    assert message is not None, f"{'.'.join(map(str, path))}: {value} was accepted"


@settings(max_examples=25, deadline=None)
@given(st.sampled_from(key_paths(BASE)), junk)
def test_check_config_exits_2_with_a_message_and_no_traceback(tmp_path_factory, path, value):
    data = replaced(BASE, path, value)
    if load(data) is None:
        return
    config = tmp_path_factory.mktemp("cfg") / "line.yaml"
    config.write_text(yaml.safe_dump(data))
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(["check-config", "--no-model", str(config)])
    assert code == 2
    assert err.getvalue().startswith("error: ") and "Traceback" not in err.getvalue()
