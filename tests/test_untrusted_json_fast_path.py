"""``untrusted_json.problems`` answers "nothing" from a C-speed proof for ordinary values (every
guest result on every hook call) and walks the value otherwise: the answers must be the walk's."""

from __future__ import annotations

from typing import Any

import pytest

from gonext_plugins import untrusted_json
from gonext_plugins.untrusted_json import MAX_DEPTH, problems


def nested(levels: int, leaf: Any = 1) -> Any:
    value = leaf
    for i in range(levels):
        value = [value] if i % 2 else {"k": value}
    return value


@pytest.mark.parametrize("value", [
    {"title": "t", "meta": [{"name": "description", "content": "d"}], "jsonld": {"a": [1, 2.5, None]}},
    nested(MAX_DEPTH),
    "text", 3, None, [], {},
    {"brackets in text": "{[{[" * 40},  # counted, so the proof gives up, and the walk finds nothing
    {"big": 10**30},  # orjson will not encode it: the walk decides
    {"é": "ü😀"},
])
def test_clean_values_have_no_problems(value: Any) -> None:
    assert problems(value) == []


def test_one_level_too_deep_is_found() -> None:
    assert untrusted_json._clearly_fine(nested(MAX_DEPTH), MAX_DEPTH)
    assert not untrusted_json._clearly_fine(nested(MAX_DEPTH + 1), MAX_DEPTH)
    found = problems(nested(MAX_DEPTH + 1))
    assert len(found) == 1 and "nested more than" in found[0][1]


@pytest.mark.parametrize("value, path", [
    ({"a": ["ok", "bad \ud800"]}, ("a", 1)),
    ({"key \udc00": 1}, ("key \\udc00",)),
    ("\ud83d", ()),
])
def test_lone_surrogates_are_found_in_values_and_keys(value: Any, path: tuple[Any, ...]) -> None:
    assert not untrusted_json._clearly_fine(value, MAX_DEPTH)
    found = problems(value)
    assert [p for p, _ in found] == [path] and "lone surrogate" in found[0][1]


def test_a_smaller_max_depth_is_honoured() -> None:
    assert problems({"a": {"b": 1}}, max_depth=2) == []
    assert [p for p, _ in problems({"a": {"b": {"c": 1}}}, max_depth=2)] == [("a", "b")]
