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

import orjson

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


_Link = tuple[Any, PathElement] | None
"""A path as a chain of ``(parent link, key)``: built into a tuple only for a problem, so checking
a clean value (every guest result, on every hook call) allocates no path per item."""


def _path(link: _Link) -> tuple[PathElement, ...]:
    keys: list[PathElement] = []
    while link is not None:
        link, key = link
        keys.append(key)
    return tuple(reversed(keys))


def problems(value: Any, *, max_depth: int = MAX_DEPTH) -> list[Problem]:
    """Every over-deep container and every string (key or value) holding a lone surrogate, with
    its path; walks iteratively so the check itself cannot overflow the stack. An ASCII string
    (``str.isascii`` is O(1) in CPython) holds no surrogate: it is not encoded, and like a number
    it is not even pushed."""
    if _clearly_fine(value, max_depth):
        return []
    found: list[Problem] = []
    stack: list[tuple[_Link, int, Any]] = [(None, 0, value)]
    surrogate = "contains a lone surrogate (an unpaired \\ud800-\\udfff escape), which is not text"
    while stack:
        link, depth, item = stack.pop()
        if isinstance(item, str):
            if not item.isascii() and _has_lone_surrogate(item):
                found.append((_path(link), surrogate))
            continue
        if not isinstance(item, dict | list):
            continue
        if depth >= max_depth:
            found.append((_path(link), f"is nested more than {max_depth} levels deep"))
            continue
        children = item.items() if isinstance(item, dict) else enumerate(item)
        for key, child in children:
            if isinstance(key, str) and not key.isascii() and _has_lone_surrogate(key):
                found.append(((*_path(link), key.encode("utf-8", "backslashreplace").decode()),
                              f"key {surrogate}"))
                continue
            if (isinstance(child, str) and child.isascii()) or not isinstance(child, str | dict | list):
                continue  # nothing to find there: not even pushed
            stack.append(((link, key), depth + 1, child))
    return found


def _clearly_fine(value: Any, max_depth: int) -> bool:
    """A proof in C that :func:`problems` would find nothing, for the common case (every guest
    result, on every hook call): orjson refuses to encode a lone surrogate (in a key or a value), and
    each level of dict or list nesting writes at least one ``{`` or ``[``, so an encoding with at
    most ``max_depth`` of them (brackets inside strings only add to the count) nests no deeper.
    False when unsure: anything orjson will not encode, or too many brackets, gets the full walk."""
    try:
        encoded = orjson.dumps(value)
    except TypeError:
        return False
    return encoded.count(b"{") + encoded.count(b"[") <= max_depth
