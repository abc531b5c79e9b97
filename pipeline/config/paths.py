"""Where a relative path in a config file points: the config file's folder first, then
the working directory. Owns that order and the "not found" message that lists every
place searched, so a missing model names the config file, the key and the candidates.
"""

from __future__ import annotations

import os
from pathlib import Path


def candidates(path: Path, config_dir: Path) -> list[Path]:
    """The places a path from a config file in `config_dir` may mean, in search order.
    The config's folder comes first, so a shipped config works from any working directory."""
    if path.is_absolute():
        return [path]
    both = [Path(os.path.normpath(d.absolute() / path)) for d in (config_dir, Path.cwd())]
    return both if both[0] != both[1] else both[:1]


def resolve_existing(path: Path, config_dir: Path) -> Path | None:
    return next((p for p in candidates(path, config_dir) if p.exists()), None)


def not_found_message(source: str, key: str, path: Path, config_dir: Path) -> str:
    searched = ", ".join(str(p) for p in candidates(path, config_dir))
    return (f"{source}: {key}: {path}: file not found; searched {searched} "
            "(relative paths are taken from the config file's folder, then the working directory)")
