"""Untrusted strings made storable on every supported database: the one home of that rule.

Two kinds of character break storage although Python strings hold them happily:

- NUL (U+0000): PostgreSQL refuses it in ``text``/``varchar`` columns and in ``jsonb`` (as
  ``"\\u0000"``); SQLite stores it. One NUL in a plugin's panic message or log line used to make the
  whole insert fail, on PostgreSQL only.
- Lone surrogates (U+D800 to U+DFFF not in a pair): they cannot be encoded as UTF-8, so every
  driver refuses them (``json.loads`` happily produces them from ``"\\ud800"``).

Text the host keeps as a *record* (log lines, fault messages, trap reports, job errors and results,
audit details) is made storable with :func:`storable_text` / :func:`storable_json`: NUL becomes the
visible four characters ``\\x00`` and a lone surrogate U+FFFD, so the record survives and still
shows where the odd character was. Data a plugin or a client will *read back* (manifests, kv keys
and values, job payloads) is refused instead, naming where the character is
(:func:`unstorable_paths`): changing it silently would hand back something else than was written.

Pure functions, no Django: the manifest layer and the models both use them.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

NUL_ESCAPE = "\\x00"
"""What a NUL becomes in a stored record: visible, and plain ASCII."""

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def _replace(match: re.Match[str]) -> str:
    return NUL_ESCAPE if match.group() == "\x00" else "\ufffd"


def is_storable(text: str) -> bool:
    """True when ``text`` holds no NUL and no lone surrogate (a valid surrogate pair cannot occur
    in a Python ``str`` decoded from UTF-8 or JSON: it is one code point there)."""
    return _UNSTORABLE.search(text) is None


def storable_text(text: str) -> str:
    """``text`` with each NUL written as ``\\x00`` and each lone surrogate as U+FFFD."""
    return text if is_storable(text) else _UNSTORABLE.sub(_replace, text)


def storable_json(value: Any) -> Any:
    """A JSON-like value with every string (object keys included) made storable; other values and
    containers that need no change are returned as they are (no copy on the common path)."""
    if isinstance(value, str):
        return storable_text(value)
    if isinstance(value, dict):
        if all(isinstance(k, str) and is_storable(k) for k in value) and not any(
                _needs_change(v) for v in value.values()):
            return value
        return {storable_text(k) if isinstance(k, str) else k: storable_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        if not any(_needs_change(v) for v in value):
            return value
        return [storable_json(v) for v in value]
    return value


def _needs_change(value: Any) -> bool:
    return next(unstorable_paths(value), None) is not None


Path = tuple[str | int, ...]


def unstorable_paths(value: Any, path: Path = ()) -> Iterator[Path]:
    """The path of every string (value or object key) holding a NUL or a lone surrogate, depth
    first; a key's path is the path of the object plus the key itself."""
    if isinstance(value, str):
        if not is_storable(value):
            yield path
    elif isinstance(value, dict):
        for key, item in value.items():
            if isinstance(key, str) and not is_storable(key):
                yield (*path, key)
            yield from unstorable_paths(item, (*path, key))
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from unstorable_paths(item, (*path, index))


def describe(text: str) -> str:
    """Which offending characters ``text`` holds, for an error message."""
    kinds = []
    if "\x00" in text:
        kinds.append("a NUL character")
    if any("\ud800" <= c <= "\udfff" for c in text):
        kinds.append("a lone surrogate")
    return " and ".join(kinds) or "no unstorable character"
