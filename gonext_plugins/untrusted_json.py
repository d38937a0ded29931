"""Checks every piece of client-supplied JSON passes before anything walks it recursively.

Two shapes of valid JSON still crash a Python service: nesting deep enough that a recursive
walk (a schema's ``uniqueItems``, ``json.dumps``, a serializer) raises ``RecursionError``, and a
``\\ud800`` escape that decodes to a lone surrogate, which no UTF-8 encoder (a database driver,
the JSON renderer) accepts. Both are found here, iteratively, so bundle manifests and API bodies
are refused with a 4xx instead of failing later as a 500.

No Django here (layer 2).
"""

from __future__ import annotations

from typing import Any

MAX_DEPTH = 32
"""Deepest nesting of objects and arrays accepted; real manifests and API bodies use under 5."""

PathElement = str | int
Problem = tuple[tuple[PathElement, ...], str]


def _has_lone_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def problems(value: Any, *, max_depth: int = MAX_DEPTH) -> list[Problem]:
    """Every over-deep container and every string (key or value) holding a lone surrogate, with
    its path; walks iteratively so the check itself cannot overflow the stack."""
    found: list[Problem] = []
    stack: list[tuple[tuple[PathElement, ...], Any]] = [((), value)]
    surrogate = "contains a lone surrogate (an unpaired \\ud800-\\udfff escape), which is not text"
    while stack:
        path, item = stack.pop()
        if isinstance(item, str):
            if _has_lone_surrogate(item):
                found.append((path, surrogate))
            continue
        if not isinstance(item, dict | list):
            continue
        if len(path) >= max_depth:
            found.append((path, f"is nested more than {max_depth} levels deep"))
            continue
        if isinstance(item, dict):
            for key, child in item.items():
                if isinstance(key, str) and _has_lone_surrogate(key):
                    found.append(((*path, key.encode("utf-8", "backslashreplace").decode()),
                                  f"key {surrogate}"))
                    continue
                stack.append(((*path, key), child))
        else:
            stack.extend(((*path, index), child) for index, child in enumerate(item))
    return found

