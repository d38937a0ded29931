"""The reading-time example in every language (Zig, C, Rust, AssemblyScript), built from source once
per session (tests/conftest.py's ``reading_time_build``), answers every fixture of
``examples/plugins/reading-time-fixtures`` twice: through the real site (installed, granted and
activated by the lifecycle, the app's real host functions on the test database: settings.get,
kv.set, kv.incr, a denied kv when it is not granted), and through `manage.py plugin run --fixture`
(no site, no database: the command an author runs in CI), which checks the same ``expect``."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command

from tests.conftest import EXAMPLES
from tests.reading_time import FIXTURES, check, fixture_names, load_fixture, run_fixture

LANGUAGES = ("zig", "c", "rust", "assemblyscript")


def built_project(reading_time_build: Callable[[str], Any], lang: str) -> tuple[Path, bytes]:
    """The example's project copy (its dev build inside) and the module `plugin dev` would upload."""
    built, checked = reading_time_build(lang)
    assert built.lang == lang
    project: Path = built.wasm_path.parents[2]  # <project>/build/dev/plugin.wasm
    return project, checked.wasm


@pytest.mark.django_db
@pytest.mark.parametrize("name", fixture_names())
@pytest.mark.parametrize("lang", LANGUAGES)
def test_the_example_answers_the_fixture_on_the_site(lang: str, name: str, reading_time_build: Any,
                                                     make_bundle: Any,
                                                     django_capture_on_commit_callbacks: Any) -> None:
    project, wasm = built_project(reading_time_build, lang)
    answer = run_fixture(project, wasm, load_fixture(name), make_bundle, django_capture_on_commit_callbacks)
    check(answer, load_fixture(name)["expect"])


@pytest.mark.parametrize("lang", LANGUAGES)
def test_plugin_run_passes_every_fixture(lang: str, reading_time_build: Any) -> None:
    """Exit 0 for each fixture (a failed ``expect`` is a CommandError, exit 1, with the diff)."""
    project, _ = built_project(reading_time_build, lang)
    for path in sorted(FIXTURES.glob("*.json")):
        out = io.StringIO()
        call_command("plugin", "run", str(project), "--fixture", str(path), "--json", stdout=out)
        report = json.loads(out.getvalue())
        assert report["expect"]["passed"] is True, (path.stem, report["expect"])
        assert report["fuel"] > 0


@pytest.mark.parametrize("lang", LANGUAGES)
def test_the_examples_ship_the_same_manifest(lang: str) -> None:
    """Only slug and name differ between languages (examples/plugins/README.md)."""

    def comparable(path: str) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((EXAMPLES / path / "manifest.json").read_text())
        return {k: v for k, v in data.items() if k not in ("slug", "name")}

    assert comparable(f"reading-time-{lang}") == comparable("reading-time-zig")
    assert json.loads((EXAMPLES / f"reading-time-{lang}" / "manifest.json").read_text())["slug"] == \
        f"reading-time-{lang}"
