"""The reading-time example in C and in Zig, built from source, answer every fixture of
``examples/plugins/reading-time-fixtures`` through the real runtime and the app's real host
functions (settings.get, kv.set, kv.incr; a denied kv when it is not granted)."""

from __future__ import annotations

import importlib.util
import json
from functools import cache
from typing import Any

import pytest

from gonext_plugins.devtools import builders
from tests.conftest import REPO
from tests.reading_time import check, fixture_names, load_fixture, run_fixture

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(importlib.util.find_spec("ziglang") is None,
                       reason="ziglang is not installed (pip install ziglang)"),
]

EXAMPLES = REPO / "examples" / "plugins"
LANGUAGES = ("c", "zig")


@cache
def example_wasm(lang: str) -> bytes:
    """The example's dev build (what `plugin dev` uploads), built once per session."""
    built, checked = builders.build(EXAMPLES / f"reading-time-{lang}")
    assert built.lang == lang
    return checked.wasm


@pytest.mark.parametrize("name", fixture_names())
@pytest.mark.parametrize("lang", LANGUAGES)
def test_the_example_answers_the_fixture(lang: str, name: str, make_bundle: Any,
                                         django_capture_on_commit_callbacks: Any) -> None:
    fixture = load_fixture(name)
    answer = run_fixture(EXAMPLES / f"reading-time-{lang}", example_wasm(lang), fixture, make_bundle,
                         django_capture_on_commit_callbacks)
    check(answer, fixture["expect"])


@pytest.mark.parametrize("lang", LANGUAGES)
def test_the_examples_ship_the_same_manifest(lang: str) -> None:
    """Only slug and name differ between languages (examples/plugins/README.md)."""

    def comparable(path: str) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((EXAMPLES / path / "manifest.json").read_text())
        return {k: v for k, v in data.items() if k not in ("slug", "name")}

    assert comparable(f"reading-time-{lang}") == comparable("reading-time-zig")
    assert json.loads((EXAMPLES / f"reading-time-{lang}" / "manifest.json").read_text())["slug"] == \
        f"reading-time-{lang}"
