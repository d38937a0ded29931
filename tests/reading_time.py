"""Run an example plugin against a fixture of ``examples/plugins/reading-time-fixtures`` in the test
site: installed and activated like any plugin, its grants and settings set by the lifecycle, its kv
store filled before the call, the call made through the registry with the app's real host
functions; then the result, the store and the plugin's own log lines compared with ``expect``.

Shared by every language's example test, so each is checked against the same reading of the
fixture format (``examples/plugins/README.md``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from gonext_plugins import lifecycle, logs
from gonext_plugins.models import PluginKV, PluginLogEntry
from gonext_plugins.registry import registry
from gonext_plugins.runtime.metrics import existing_stats
from tests.conftest import REPO

FIXTURES = REPO / "examples" / "plugins" / "reading-time-fixtures"


def fixture_names() -> list[str]:
    return sorted(path.stem for path in FIXTURES.glob("*.json"))


def load_fixture(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))
    return data


def run_fixture(project: Path, wasm: bytes, fixture: dict[str, Any], make_bundle: Any,
                capture_on_commit: Any) -> dict[str, Any]:
    """Install ``wasm`` with ``project``'s manifest, set the fixture's state, call the hook; returns
    ``{"result", "kv", "logs"}`` as the fixture's ``expect`` spells them."""
    manifest = json.loads((project / "manifest.json").read_text(encoding="utf-8"))
    slug = manifest["slug"]
    asked = [*manifest.get("capabilities", []), *manifest.get("optionalCapabilities", [])]
    # "grants" lists what the admin granted; an install always holds the required capabilities.
    grants = sorted(set(manifest.get("capabilities", [])) | set(fixture.get("grants", asked)))
    with capture_on_commit(execute=True):
        lifecycle.install(make_bundle(wasm=wasm, **manifest), grants, "tests", activate=True)
    if fixture.get("settings"):
        with capture_on_commit(execute=True):
            lifecycle.settings.update(slug, fixture["settings"], "tests")
    for key, value in fixture.get("kv", {}).items():
        PluginKV.objects.create(plugin_slug=slug, key=key, value=value, size=len(json.dumps(value)))
    loaded = registry.get(slug)
    assert loaded is not None, f"{slug} did not load"
    def call() -> Any:
        if fixture["kind"] == "filter":
            return loaded.invoke("filter", fixture["hook"], fixture.get("value"), *fixture.get("args", []))
        return loaded.invoke("action", fixture["hook"], *fixture.get("args", []))

    result = call()
    if any(hook["name"] == fixture["hook"] and hook.get("pure") for hook in manifest["hooks"]):
        # Declared pure (the manifest says the answer depends on the input and settings only): the
        # same input again is answered from the remembered result, the same answer, no guest call.
        stats = existing_stats(slug)
        assert stats is not None
        reused = stats.settled().reused
        assert call() == result
        assert stats.settled().reused == reused + 1, f"{fixture['hook']} was not answered from memory"
    logs.flush()
    lines = PluginLogEntry.objects.filter(plugin=slug, source="guest").order_by("id")
    return {
        "result": result,
        "kv": {row.key: row.value for row in PluginKV.objects.filter(plugin_slug=slug)},
        "logs": [[line.level, line.message] for line in lines],
    }


def check(answer: dict[str, Any], expect: dict[str, Any]) -> None:
    """Every key ``expect`` gives must match (kv: the whole store after the call)."""
    for key in ("result", "kv", "logs"):
        if key in expect:
            assert answer[key] == expect[key], f"{key}: {answer[key]!r} != {expect[key]!r}"
