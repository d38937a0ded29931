"""The capability diff between builds: + added, - removed, = unchanged; the first build is all =."""

from __future__ import annotations

from gonext_plugins.devtools import capdiff
from gonext_plugins.manifest import validate


def manifest(required: list[str], optional: list[str] | None = None) -> dict[str, object]:
    data: dict[str, object] = {"apiVersion": "gonext.io/v1", "slug": "demo", "name": "Demo",
                               "version": "1.0.0", "abi": 1, "capabilities": required}
    if optional is not None:
        data["optionalCapabilities"] = optional
    return data


def test_first_build_is_all_unchanged() -> None:
    diff = capdiff.diff(None, validate(manifest(["kv", "hooks.subscribe"], ["http.fetch"])))
    assert diff.first and not diff.changed
    assert diff.required == (("=", "hooks.subscribe"), ("=", "kv"))
    assert diff.optional == (("=", "http.fetch"),)
    assert diff.lines() == ["capabilities (first build: nothing to compare with)", "  required:",
                            "    = hooks.subscribe", "    = kv", "  optional:", "    = http.fetch"]


def test_added_removed_unchanged() -> None:
    before = validate(manifest(["kv", "posts.read"], ["http.fetch"]))
    after = validate(manifest(["kv", "jobs.enqueue"], []))
    diff = capdiff.diff(before, after)
    assert not diff.first and diff.changed
    assert diff.required == (("+", "jobs.enqueue"), ("=", "kv"), ("-", "posts.read"))
    assert diff.optional == (("-", "http.fetch"),)
    assert diff.lines()[0] == "capabilities changed since the previous build"


def test_moving_optional_to_required_shows_in_both_lists() -> None:
    diff = capdiff.diff(manifest(["kv"], ["http.fetch"]), manifest(["kv", "http.fetch"]))
    assert diff.required == (("+", "http.fetch"), ("=", "kv"))
    assert diff.optional == (("-", "http.fetch"),)


def test_unchanged_and_empty() -> None:
    diff = capdiff.diff(manifest(["kv"]), manifest(["kv"]))
    assert not diff.changed and diff.lines()[0] == "capabilities unchanged"
    empty = capdiff.diff(manifest([]), manifest([]))
    assert empty.lines() == ["capabilities unchanged", "  (none)"]
    assert empty.as_dict() == {"first": False, "changed": False, "required": [], "optional": []}
