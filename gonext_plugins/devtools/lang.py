"""Which language a plugin project is written in, from the files at its top level.

Why strict: guessing between two toolchains builds the wrong thing silently, so two markers of
different languages is an error naming both, and no marker is an error listing what was looked
for. ``--lang`` overrides detection. No Django here.
"""

from __future__ import annotations

import os
from pathlib import Path

from gonext_plugins.errors import AmbiguousLanguage, LanguageError, UnknownLanguage

LANGUAGES = ("zig", "wat", "rust", "tinygo", "assemblyscript", "c")
AUTO = "auto"

# What each language is recognised by, as people would write it in a message.
MARKERS: dict[str, str] = {
    "zig": "build.zig or *.zig",
    "wat": "*.wat",
    "rust": "Cargo.toml",
    "tinygo": "go.mod",
    "assemblyscript": "asconfig.json",
    "c": "main.c or *.c",
}


def markers(project_dir: str | os.PathLike[str]) -> dict[str, list[str]]:
    """Language -> marker files at the top level of ``project_dir`` (sorted names)."""
    root = Path(project_dir)
    if not root.is_dir():
        raise LanguageError(f"{root} is not a directory")
    found: dict[str, list[str]] = {}
    for entry in sorted(root.iterdir()):
        if not entry.is_file():
            continue
        name = entry.name
        lang = None
        if name == "build.zig" or name.endswith(".zig"):
            lang = "zig"
        elif name.endswith(".wat"):
            lang = "wat"
        elif name == "Cargo.toml":
            lang = "rust"
        elif name == "go.mod":
            lang = "tinygo"
        elif name == "asconfig.json":
            lang = "assemblyscript"
        elif name.endswith(".c"):
            lang = "c"
        if lang is not None:
            found.setdefault(lang, []).append(name)
    return found


def detect(project_dir: str | os.PathLike[str], lang: str = AUTO) -> str:
    """The project's language: ``lang`` itself unless it is ``auto``, else the one language whose
    markers are present. Raises :class:`AmbiguousLanguage` / :class:`UnknownLanguage`."""
    if lang != AUTO:
        if lang not in LANGUAGES:
            raise LanguageError(f"unknown language {lang!r}; choose one of {', '.join(LANGUAGES)}")
        return lang
    found = markers(project_dir)
    if len(found) == 1:
        return next(iter(found))
    if not found:
        looked = "; ".join(f"{marker} ({lang})" for lang, marker in MARKERS.items())
        raise UnknownLanguage(f"cannot tell the language of {project_dir}: looked for {looked}; "
                              f"pass --lang {'|'.join(LANGUAGES)}")
    both = " and ".join(f"{', '.join(files)} ({lang})" for lang, files in found.items())
    raise AmbiguousLanguage(f"{project_dir} has markers of {len(found)} languages: {both}; keep one "
                            "or pass --lang to choose", found=found)
