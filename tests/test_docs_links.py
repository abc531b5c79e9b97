"""Every local link and every repository path the docs name resolves inside the
repository: markdown links (relative to the file), and paths in code (`inline` or
fenced) that start with one of the repository's folders (relative to the root).
Files the documented commands *write* are listed in GENERATED; nothing may point
outside the repository (`../shared/...`; a config's `../engines/...` is inside)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = sorted([ROOT / "README.md", *(ROOT / "docs").rglob("*.md"), ROOT / "systemd" / "README.md",
               ROOT / "engines" / "demo.md"])
TOP = ("configs", "engines", "docs", "tools", "systemd", "tests", "pipeline", ".ci")
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
CODE = re.compile(r"```[^\n]*\n(.*?)```|`([^`\n]+)`", re.S)
PATH = re.compile(rf"(?<![\w./-])((?:{'|'.join(re.escape(t) for t in TOP)})/[\w./*-]*[\w*]|(?:\.\./)+[\w.-]+/[\w./*-]*[\w*])")
# Written by the commands the docs show (build-engine, convert, train, bench): not in git.
GENERATED = re.compile(r"\.engine(\.json)?$|[-_](fp16|int8)\.onnx$|\*|^engines/[\w-]+\.json$|/$")


def local_links(text: str) -> list[str]:
    return [t for t in LINK.findall(text) if not re.match(r"[a-z]+:|#", t)]


def code_paths(text: str) -> list[str]:
    found = []
    for block, inline in CODE.findall(text):
        found += PATH.findall(block or inline)
    return found


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_local_links_resolve(doc):
    missing = [t for t in local_links(doc.read_text()) if not (doc.parent / t.split("#")[0]).exists()]
    assert not missing, f"{doc.relative_to(ROOT)} links to missing files: {missing}"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_repository_paths_in_code_exist(doc):
    paths = code_paths(doc.read_text())
    # `../engines/demo.onnx` as a config writes it (relative to configs/) stays inside
    outside = [p for p in paths if p.startswith("../") and not _inside_from_configs(p)]
    missing = [p for p in paths if not p.startswith("../") and not GENERATED.search(p) and not (ROOT / p).exists()]
    assert not outside, f"{doc.relative_to(ROOT)} names files outside the repository: {outside}"
    assert not missing, f"{doc.relative_to(ROOT)} names repository files that do not exist: {missing}"


def _inside_from_configs(path: str) -> bool:
    target = (ROOT / "configs" / path).resolve()
    return target.is_relative_to(ROOT) and target.exists()


def test_the_checker_finds_what_it_must():
    text = "see [x](docs/NOPE.md) and `configs/nope.yaml`, ```\nrun ../shared/m.onnx\n``` [w](https://a.b)"
    assert local_links(text) == ["docs/NOPE.md"]
    assert code_paths(text) == ["configs/nope.yaml", "../shared/m.onnx"]
