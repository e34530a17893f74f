"""The prose checked against what it describes: the configuration table, and every link."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from app.config import Settings
from tests.support import ROOT

CONFIGURATION: Path = ROOT / "docs" / "configuration.md"
README: Path = ROOT / "README.md"
PROSE: list[Path] = [README, *sorted((ROOT / "docs").glob("*.md"))]
# | `NAME` | default | meaning |
_SETTING_ROW = re.compile(r"^\| `([A-Z][A-Z0-9_]*)` \| ([^|]+) \|", re.MULTILINE)
# [text](target): the targets this project's prose links to (no images, no reference links).
_LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
_HEADING = re.compile(r"^#{1,6} (.+?)\s*#*$", re.MULTILINE)
_FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)


class _Recording(Mapping[str, str]):
    """An empty environment that remembers every name read from it."""

    def __init__(self) -> None:
        self.read: set[str] = set()

    def __getitem__(self, name: str) -> str:
        self.read.add(name)
        raise KeyError(name)

    def get(self, name: str, default: object = None) -> object:  # type: ignore[override]
        self.read.add(name)
        return default

    def __contains__(self, name: object) -> bool:
        if isinstance(name, str):
            self.read.add(name)
        return False

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


def _rows(path: Path) -> dict[str, str]:
    return {name: default.strip() for name, default in _SETTING_ROW.findall(path.read_text(encoding="utf-8"))}


def test_docs_configuration_lists_every_variable_settings_reads() -> None:
    environ = _Recording()
    Settings.from_env(environ)

    assert set(_rows(CONFIGURATION)) == environ.read


def _literal_defaults() -> list[tuple[str, str]]:
    """The rows whose default is a value (`5`), not a description (*(unset)*, a path's place)."""
    rows = [(name, re.fullmatch(r"`([^`]+)`", default)) for name, default in _rows(CONFIGURATION).items()]
    return sorted((name, match[1]) for name, match in rows if match is not None)


@pytest.mark.parametrize(("name", "default"), _literal_defaults())
def test_docs_configuration_default_is_what_unset_gives(name: str, default: str) -> None:
    assert Settings.from_env({name: default}) == Settings.from_env({})


def test_docs_readme_settings_are_rows_of_the_configuration_table() -> None:
    readme, full = _rows(README), _rows(CONFIGURATION)

    assert readme, "the README's configuration table was not found"
    assert {name: full.get(name) for name in readme} == readme


def _anchors(path: Path) -> set[str]:
    """GitHub's heading ids: lower case, punctuation dropped, spaces as hyphens, repeats numbered."""
    seen: dict[str, int] = {}
    anchors = set()
    for heading in _HEADING.findall(_FENCE.sub("", path.read_text(encoding="utf-8"))):
        slug = re.sub(r"[^\w\- ]", "", heading.replace("`", "").strip().lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        anchors.add(slug if count == 0 else f"{slug}-{count}")
    return anchors


def _links() -> Iterator[tuple[str, str]]:
    for path in PROSE:
        for target in _LINK.findall(_FENCE.sub("", path.read_text(encoding="utf-8"))):
            if not re.match(r"[a-z]+:", target):
                yield str(path.relative_to(ROOT)), target


@pytest.mark.parametrize(("source", "target"), sorted(set(_links())))
def test_docs_link_reaches_its_file_and_heading(source: str, target: str) -> None:
    file_part, _, anchor = target.partition("#")
    path = (ROOT / source).parent / file_part if file_part else ROOT / source

    assert path.exists(), f"{source} links to a missing {file_part}"
    if anchor:
        assert anchor in _anchors(path), f"{source} links to a missing heading {target}"
