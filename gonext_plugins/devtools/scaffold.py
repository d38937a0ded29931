"""``manage.py plugin new <dir> --lang zig|wat|rust|c|assemblyscript``: a plugin that builds, loads and runs
out of the box.

Why templates in the package: a newcomer's first build should succeed before they change a line,
so what ``new`` writes is tested like code (tests/devtools build and run each template). Templates
use ``{{placeholder}}`` (not ``$``: WAT names start with ``$``). No Django here.
"""

from __future__ import annotations

import json
import os
import re
from importlib import resources
from pathlib import Path

from gonext_plugins.devtools.build_assemblyscript import ASSEMBLYSCRIPT_VERSION
from gonext_plugins.devtools.sdks import sdk_dir
from gonext_plugins.errors import ScaffoldError

SCAFFOLD_LANGUAGES = ("zig", "wat", "rust", "c", "assemblyscript")
_SLUG = re.compile(r"^[a-z][a-z0-9]*(?:-[a-z0-9]+)*$")
# template name -> file written
_COMMON = {"manifest.json.tmpl": "manifest.json", "README.md.tmpl": "README.md"}
FILES = {
    "zig": {"main.zig.tmpl": "main.zig", **_COMMON},
    "wat": {"plugin.wat.tmpl": "plugin.wat", **_COMMON},
    "c": {"main.c.tmpl": "main.c", **_COMMON},
    "assemblyscript": {"index.ts.tmpl": "assembly/index.ts", "package.json.tmpl": "package.json",
                       "asconfig.json.tmpl": "asconfig.json", **_COMMON},
    "rust": {"Cargo.toml.tmpl": "Cargo.toml", "lib.rs.tmpl": "src/lib.rs", **_COMMON},
}
GITIGNORE = "build/\n"
GITIGNORES = {"assemblyscript": "build/\nnode_modules/\n"}


def slug_for(directory: str | os.PathLike[str]) -> str:
    """A manifest slug from a directory name: ``My_Plugin`` -> ``my-plugin``."""
    name = Path(directory).resolve().name.lower()
    slug = re.sub(r"[^a-z0-9]+", "-", name).strip("-")
    slug = re.sub(r"^[0-9-]+", "", slug)
    return slug[:64].rstrip("-")


def title_for(slug: str) -> str:
    return " ".join(part.capitalize() for part in slug.split("-"))


def _wat_string(text: str) -> str:
    """A WAT string literal's contents: quotes and backslashes escaped, non-ASCII as \\hh."""
    out = []
    for byte in text.encode():
        ch = chr(byte)
        if ch in "\"\\" or byte < 0x20 or byte > 0x7E:
            out.append(f"\\{byte:02x}")
        else:
            out.append(ch)
    return "".join(out)


def render(lang: str, slug: str, name: str | None = None) -> dict[str, str]:
    """File name -> contents for a new plugin (nothing is written)."""
    if lang not in SCAFFOLD_LANGUAGES:
        raise ScaffoldError(f"no template for {lang!r}; `plugin new` knows {', '.join(SCAFFOLD_LANGUAGES)}")
    if not _SLUG.match(slug) or not 2 <= len(slug) <= 64:
        raise ScaffoldError(f"{slug!r} is not a valid plugin slug: lowercase letters, digits and single "
                            "hyphens, starting with a letter, 2-64 characters (pass --slug)")
    title = name or title_for(slug)
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9 ._-]{0,99}", title):
        raise ScaffoldError(f"plugin name {title!r}: use letters, digits, spaces, '.', '_' and '-'")
    # structured output the host renders and escapes: page markup from a plugin would be sanitized
    body = json.dumps({"meta": [{"name": "generator", "content": slug}]})
    values = {"slug": slug, "name": title, "body_wat": _wat_string(body), "body_len": str(len(body.encode())),
              "assemblyscript_version": ASSEMBLYSCRIPT_VERSION}
    if lang == "rust":  # Cargo.toml's path dependency, so cargo and rust-analyzer find the SDK too
        values["sdk_rust"] = sdk_dir("rust").as_posix()
    folder = resources.files("gonext_plugins.devtools").joinpath("templates", lang)
    files = {}
    for template, target in FILES[lang].items():
        text = folder.joinpath(template).read_text(encoding="utf-8")
        files[target] = re.sub(r"\{\{(\w+)\}\}", lambda m: values[m.group(1)], text)
    files[".gitignore"] = GITIGNORES.get(lang, GITIGNORE)
    return files


def create(directory: str | os.PathLike[str], lang: str = "zig", *, slug: str | None = None,
           name: str | None = None) -> list[Path]:
    """Write a new plugin into ``directory`` (created; refused when it exists and is not empty).
    Returns the paths written."""
    target = Path(directory)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise ScaffoldError(f"{target} already exists and is not empty; choose a new directory")
    files = render(lang, slug or slug_for(target), name)
    target.mkdir(parents=True, exist_ok=True)
    written = []
    for filename, text in files.items():
        path = target / filename
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written
