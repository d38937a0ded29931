"""Issue #13, item 10: the small holes, one test (or a few) each.

Each test here failed on main before its fix: a pattern that matched a value with a trailing
newline, a malformed body that became a 500, a source map parsed on every trap, a damaged blob
reused, an upgrade that changed publisher or re-asked a dropped capability without consent, and
``/metrics`` open to anything on loopback.
"""

from __future__ import annotations

from typing import Any

import pytest

from gonext_plugins import manifest
from gonext_plugins.errors import ManifestError

from ..conftest import make_manifest

# --- patterns match whole strings ---------------------------------------------------------------


@pytest.mark.parametrize(("field", "value"), [
    ("slug", "seo\n"),
    ("version", "1.0.0\n"),
    ("homepage", "https://example.com\n"),
    ("capabilities", ["kv\n"]),
    ("hooks", [{"name": "the_content\n", "kind": "filter"}]),
    ("jobs", [{"name": "sync\n"}]),
    ("http", {"allowedHosts": ["example.com\n"]}),
])
def test_every_manifest_pattern_matches_the_whole_string(field: str, value: Any) -> None:
    """``$`` matches before a trailing newline and JSON Schema's ``pattern`` is a search: each
    patterned field must refuse its valid value with a newline appended."""
    base = make_manifest(capabilities=["kv", "hooks.subscribe", "jobs.enqueue", "http.fetch"])
    clean = {**base, field: _strip_newlines(value)}
    manifest.validate(clean)  # the value without the newline is fine
    with pytest.raises(ManifestError) as info:
        manifest.validate({**clean, field: value})
    assert any(path.startswith(f"$.{field}") for path, _ in info.value.problems), info.value.problems


def _strip_newlines(value: Any) -> Any:
    if isinstance(value, str):
        return value.rstrip("\n")
    if isinstance(value, list):
        return [_strip_newlines(item) for item in value]
    if isinstance(value, dict):
        return {key: _strip_newlines(item) for key, item in value.items()}
    return value

