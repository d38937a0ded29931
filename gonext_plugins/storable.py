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

import orjson

NUL_ESCAPE = "\\x00"
"""What a NUL becomes in a stored record: visible, and plain ASCII."""

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def _replace(match: re.Match[str]) -> str:
    return NUL_ESCAPE if match.group() == "\x00" else "\ufffd"


def is_storable(text: str) -> bool:
    """True when ``text`` holds no NUL and no lone surrogate (a valid surrogate pair cannot occur
    in a Python ``str`` decoded from UTF-8 or JSON: it is one code point there). Fast paths in C:
    this runs on every log line."""
    if "\x00" in text:
        return False
    if text.isascii():
        return True
    try:
        text.encode("utf-8")  # fails only on a surrogate
    except UnicodeEncodeError:
        return False
    return True


def storable_text(text: str) -> str:
    """``text`` with each NUL written as ``\\x00`` and each lone surrogate as U+FFFD."""
    return text if is_storable(text) else _UNSTORABLE.sub(_replace, text)


def storable_json(value: Any) -> Any:
    """A JSON-like value with every string (object keys included) made storable; returned as it is
    (no copy) when nothing needs a change, the common case."""
    return value if _plainly_storable(value) or next(unstorable_paths(value), None) is None \
        else _rebuilt(value)


def _plainly_storable(value: Any) -> bool:
    """The fast check (one pass in C, also for a job's 4 MiB result): orjson writes NUL as
    ``\\u0000`` and refuses lone surrogates. False only means "walk it to be sure" (a literal
    backslash-u0000 in a string, or a value orjson cannot write)."""
    try:
        return b"\\u0000" not in orjson.dumps(value)
    except TypeError:
        return False


def _rebuilt(value: Any) -> Any:
    if isinstance(value, str):
        return storable_text(value)
    if isinstance(value, dict):
        return {storable_text(k) if isinstance(k, str) else k: _rebuilt(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_rebuilt(v) for v in value]
    return value


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
