"""YAML file -> frozen `PipelineConfig`, with errors a line integrator can act on.

Owns reading the file and translating parser and validation failures into one
`ConfigError` whose message names the file, the line, the key path, the bad value and
what was expected. Never lets a traceback reach the user.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar, cast

import yaml
from pydantic import BaseModel, ValidationError

from pipeline.config.model import BackendKind, LocalModelSettings, backends_reading
from pipeline.config.models import PipelineConfig
from pipeline.config.paths import not_found_message, resolve_existing
from pipeline.config.sources import SOURCE_KINDS


class ConfigError(Exception):
    """A config file that cannot be used; `str()` is the full user-facing message."""


def load_config(path: str | Path, *, require_model: bool = False) -> PipelineConfig:
    """`require_model`: a model file found nowhere is a ConfigError naming the config
    file, the key and every place searched (commands that open the model ask for it)."""
    path = Path(path)
    text = read_config_text(path)
    config = parse_config(text, source=str(path), base_dir=path.parent)
    # A model served by Triton lives on the server; model.path then only records its source.
    if require_model and isinstance(config.model, LocalModelSettings) and not config.model.path.exists():
        raise ConfigError(not_found_message(str(path), "model.path", config.model.path, path.parent))
    return config


def read_config_text(path: Path) -> str:
    """The file as text; ConfigError (never a traceback) if unreadable or not UTF-8."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc.strerror or exc}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ConfigError(f"{path}: not UTF-8: byte 0x{data[exc.start]:02x} at offset {exc.start} (line {line}); "
                          "save the file as UTF-8") from None


def parse_config(text: str, source: str = "<string>", base_dir: Path | None = None) -> PipelineConfig:
    config = validate_yaml(text, source, PipelineConfig)
    return _resolve_paths(config, base_dir) if base_dir is not None else config


M = TypeVar("M", bound=BaseModel)


def validate_yaml(text: str, source: str, model: type[M]) -> M:
    """YAML text -> `model`, every failure a ConfigError naming file, line and key (the
    gateway's config uses this too, so both daemons word their errors alike)."""
    try:
        data = yaml.safe_load(text)
        root = yaml.compose(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level, got {type(data).__name__}")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, source, root)) from None


def _describe(exc: ValidationError, source: str, root: yaml.Node | None) -> str:
    errors = _innermost(exc.errors(include_url=False))
    lines = [f"{source}: {len(errors)} problem(s) in the configuration:"]
    for err in errors:
        loc = _yaml_loc(err["loc"])
        where = _line_of(root, loc)
        key = ".".join(str(p) for p in loc) or "(top level)"
        lines.append(f"  - {key}{where}: {_misapplied(err) or _explain(err)}")
    return "\n".join(lines)


def _innermost(errors: list[Any]) -> list[Any]:
    """Drop errors about a container whose own element already has an error (pydantic
    reports a too-short list after one of its items failed; the item is the news)."""
    locs = [tuple(e["loc"]) for e in errors]
    return [e for e, loc in zip(errors, locs)
            if not any(len(o) > len(loc) and o[: len(loc)] == loc for o in locs)]


def _yaml_loc(loc: tuple[Any, ...]) -> tuple[Any, ...]:
    """Drop pydantic's union-branch tags (e.g. 'synthetic', 'tensorrt') that are not YAML keys."""
    out: list[Any] = []
    for i, part in enumerate(loc):
        if i > 0 and isinstance(part, str) and part in _UNION_TAGS.get(loc[i - 1], ()):
            continue
        out.append(part)
    return tuple(out)


_BACKENDS = {kind.value for kind in BackendKind}
_UNION_TAGS = {"source": set(SOURCE_KINDS), "model": _BACKENDS}


def _misapplied(err: dict[str, Any]) -> str | None:
    """For a key of one backend under another: which backend it is under and which read it."""
    loc = tuple(err["loc"])
    if err["type"] != "extra_forbidden" or len(loc) != 3 or loc[0] != "model" or loc[1] not in _BACKENDS:
        return None
    readers = backends_reading(str(loc[2]))
    if not readers:
        return None
    return (f"does not apply to backend {loc[1]} (it is read only by backend "
            f"{' or '.join(kind.value for kind in readers)})")


def _explain(err: dict[str, Any]) -> str:
    kind, value = err["type"], err.get("input")
    if kind == "extra_forbidden":
        return f"unknown key (value {value!r}); check the spelling against the config reference"
    if kind == "missing":
        return "required key is missing"
    if kind == "union_tag_invalid":
        ctx = err.get("ctx", {})
        what = "backend" if err["loc"][-1:] == ("model",) else "kind"
        return f"unknown {what} {ctx.get('tag', value)!r}; expected one of {ctx.get('expected_tags')}"
    if kind == "union_tag_not_found":
        return f"bad value {value!r}: expected a mapping of this section's keys"
    if kind == "value_error" and isinstance(value, dict):  # a rule over a section's keys says it all
        return str(err.get("ctx", {}).get("error", err["msg"]))
    shown = repr(value)
    if len(shown) > 80:
        shown = shown[:77] + "..."
    return f"bad value {shown}: {err['msg']}"


def _line_of(root: yaml.Node | None, loc: tuple[Any, ...]) -> str:
    node, found = root, None
    for part in loc:
        node = _child(node, part)
        if node is None:
            break
        found = node
    return f" (line {found.start_mark.line + 1})" if found is not None else ""


def _child(node: yaml.Node | None, part: Any) -> yaml.Node | None:
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if key.value == str(part):
                return cast(yaml.Node, value)
    if isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
        return cast(yaml.Node, node.value[part])
    return None


def _resolve_paths(config: PipelineConfig, base_dir: Path) -> PipelineConfig:
    """Relative model and replay paths, found from the config file's folder, then the cwd
    (see `pipeline.config.paths`); a path found nowhere stays as written."""
    model = config.model
    if model.path is not None:
        model = model.model_copy(update={"path": resolve_existing(model.path, base_dir) or model.path})
    cameras = tuple(
        cam.model_copy(update={"source": cam.source.model_copy(
            update={"path": resolve_existing(cam.source.path, base_dir) or cam.source.path})})
        if cam.source.kind == "replay"
        else cam
        for cam in config.cameras
    )
    return config.model_copy(update={"model": model, "cameras": cameras})
