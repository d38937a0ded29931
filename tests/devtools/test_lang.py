"""Language detection: one marker decides, two is an error naming both, none says what it looked for."""

from __future__ import annotations

from pathlib import Path

import pytest

from gonext_plugins.devtools import lang
from gonext_plugins.devtools.lang import AmbiguousLanguage, LanguageError, UnknownLanguage
from gonext_plugins.errors import BuildError


def project(tmp_path: Path, *files: str) -> Path:
    for name in files:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("")
    return tmp_path


@pytest.mark.parametrize(("files", "expected"), [
    (["main.zig"], "zig"),
    (["build.zig"], "zig"),
    (["build.zig", "main.zig", "util.zig"], "zig"),
    (["plugin.wat"], "wat"),
    (["a.wat", "b.wat"], "wat"),
    (["Cargo.toml", "src/lib.rs"], "rust"),
    (["go.mod", "main.go"], "tinygo"),
    (["asconfig.json", "package.json", "assembly/index.ts"], "assemblyscript"),
    (["main.zig", "README.md", "manifest.json"], "zig"),
])
def test_one_language(tmp_path: Path, files: list[str], expected: str) -> None:
    assert lang.detect(project(tmp_path, *files)) == expected


def test_markers_below_the_top_level_do_not_count(tmp_path: Path) -> None:
    # build/ output and vendored sources must not make a Zig project ambiguous
    assert lang.detect(project(tmp_path, "main.zig", "build/x.wat", "vendor/Cargo.toml")) == "zig"


def test_two_languages_is_an_error_naming_both(tmp_path: Path) -> None:
    with pytest.raises(AmbiguousLanguage) as info:
        lang.detect(project(tmp_path, "main.zig", "plugin.wat"))
    message = info.value.message
    assert "main.zig (zig)" in message and "plugin.wat (wat)" in message and "--lang" in message
    assert info.value.found == {"zig": ["main.zig"], "wat": ["plugin.wat"]}
    assert isinstance(info.value, BuildError)  # the command prints it like any build error


def test_three_languages(tmp_path: Path) -> None:
    with pytest.raises(AmbiguousLanguage) as info:
        lang.detect(project(tmp_path, "Cargo.toml", "go.mod", "asconfig.json"))
    assert set(info.value.found) == {"rust", "tinygo", "assemblyscript"}


def test_no_marker_says_what_it_looked_for(tmp_path: Path) -> None:
    with pytest.raises(UnknownLanguage) as info:
        lang.detect(project(tmp_path, "README.md"))
    for marker in ("build.zig or *.zig", "*.wat", "Cargo.toml", "go.mod", "asconfig.json"):
        assert marker in info.value.message


def test_lang_overrides_detection(tmp_path: Path) -> None:
    root = project(tmp_path, "main.zig", "plugin.wat")
    assert lang.detect(root, "wat") == "wat"
    assert lang.detect(root, "rust") == "rust"
    with pytest.raises(LanguageError, match="unknown language 'cobol'"):
        lang.detect(root, "cobol")


def test_not_a_directory(tmp_path: Path) -> None:
    with pytest.raises(LanguageError, match="not a directory"):
        lang.detect(tmp_path / "missing")
