"""The capability lint ``plugin dev`` runs after each upload: capabilities the module looks like it
uses but the manifest does not ask for.

Why a lint and not a check: a guest calls a host function by its name, a string the module builds
at run time, so no tool can know for sure. But nearly every plugin writes the name as a literal
(``gn.hostCall("kv.get", ...)``), and a literal ends up in a data segment. So: every host function
the site offers (``GET {host}/api/capabilities/``: the built-in ones and the site's own, each with
its capability) whose name appears in the module's data, as UTF-8 (Zig, Rust, C, WAT) or UTF-16
(AssemblyScript), counts as used: as a whole word, or inside a run of merged literals in a module
whose compiler stores them with no separator (Rust). A name built at run time is missed, and a
name in an unrelated string is a false alarm; the warning says so. Denied calls still say the fix at run time
(``loading.LoadedPlugin.denial_hint``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from gonext_plugins.capabilities import ALWAYS_GRANTED
from gonext_plugins.diagnostics.wasmbin import custom_section, wasm_data
from gonext_plugins.errors import UploadError

from .hookcheck import fetch_json

CAPABILITIES_PATH = "/api/capabilities/"
BEST_EFFORT = ("best effort: host function names found as strings in the module's data; a name built "
               "at run time is missed, an unrelated string that looks like one is a false alarm")


def fetch_functions(host: str, *, token: str | None = None, timeout: float = 10.0) -> dict[str, str]:
    """Host function name -> its capability, as the dev site offers them."""
    data = fetch_json(host, CAPABILITIES_PATH, token=token, timeout=timeout)
    if not isinstance(data, list):
        raise UploadError(f"{CAPABILITIES_PATH} did not answer with a list of capabilities")
    functions: dict[str, str] = {}
    for entry in data:
        if isinstance(entry, dict) and isinstance(entry.get("name"), str):
            for name in entry.get("functions") or []:
                if isinstance(name, str):
                    functions[name] = entry["name"]
    return functions


_NAME_CHAR = rb"[A-Za-z0-9_.\-]"


def _mentions(data: bytes, name: str) -> bool:
    """``name`` in ``data`` as a whole word (``kv.get`` is not found in ``kv.get_many``), in UTF-8
    or in UTF-16 (where a neighbouring character is followed by a zero byte)."""
    utf8 = re.escape(name.encode())
    utf16 = re.escape(name.encode("utf-16-le"))
    patterns = (rb"(?<!" + _NAME_CHAR + rb")" + utf8 + rb"(?!" + _NAME_CHAR + rb")",
                rb"(?<!" + _NAME_CHAR + rb"\x00)" + utf16 + rb"(?!" + _NAME_CHAR + rb"\x00)")
    return any(re.search(pattern, data) for pattern in patterns)


def merges_literals(wasm: bytes) -> bool:
    """Whether the module comes from a compiler that stores string literals back to back with no
    separator (Rust: ``&str`` carries its length), per its ``producers`` section. In such a module
    ``settings.get`` sits in ``naninfsettings.getkey``: no whole word to find."""
    try:
        producers = custom_section(wasm, "producers")
    except Exception:  # a module the lint cannot read is the build's problem, said elsewhere
        return False
    return producers is not None and b"\x04Rust" in producers


def used_functions(wasm: bytes, functions: Iterable[str]) -> list[str]:
    """The host functions among ``functions`` whose names the module's data segments hold: as
    whole words, or, in a module that merges its literals (:func:`merges_literals`), any dotted name
    anywhere, except inside a longer host function name (``kv.get`` in ``kv.get_many``)."""
    data = b"\x00".join(wasm_data(wasm))
    if not merges_literals(wasm):
        return sorted(name for name in functions if _mentions(data, name))
    found: list[str] = []
    masked = bytearray(data)
    for name in sorted(functions, key=len, reverse=True):  # longer names first, then masked out
        if "." not in name:  # an undotted name is too plain to find inside other text
            if _mentions(bytes(masked), name):
                found.append(name)
            continue
        spans = [m.span() for encoded in (name.encode(), name.encode("utf-16-le"))
                 for m in re.finditer(re.escape(encoded), masked)]
        for start, end in spans:
            masked[start:end] = bytes(end - start)
        if spans:
            found.append(name)
    return sorted(found)


def asked_for(manifest: Any) -> set[str]:
    """Every capability a ``Manifest`` (or a raw manifest dict) asks for, required or optional."""
    if isinstance(manifest, Mapping):
        return {str(c) for key in ("capabilities", "optionalCapabilities") for c in manifest.get(key) or []}
    return set(manifest.capabilities) | set(manifest.optional_capabilities)


def warnings(manifest: Any, wasm: bytes, functions: Mapping[str, str]) -> list[str]:
    """One line per capability the module seems to use that the manifest does not ask for (the
    always-granted ones never need asking)."""
    missing: dict[str, list[str]] = {}
    asked = asked_for(manifest) | ALWAYS_GRANTED
    for name in used_functions(wasm, functions):
        capability = functions[name]
        if capability not in asked:
            missing.setdefault(capability, []).append(name)
    return [f'"{cap}" (the module names {", ".join(names)}): add "{cap}" to "optionalCapabilities" '
            f'(or "capabilities" if the plugin cannot work without it) in manifest.json'
            for cap, names in sorted(missing.items())]
