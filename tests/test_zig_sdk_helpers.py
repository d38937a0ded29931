"""The Zig SDK's typed host-function helpers (``gn.settingsGet``, ``gn.kvIncr``, ``gn.kvCas``,
``gn.kvSet`` with a TTL, ``gn.kvList``, ``gn.pluginInfo``, ...) against the app's real host
functions on a real database, through ``tests/guests/zig_sdk_helpers`` installed and activated like
any plugin; and the SEO example's setting (``twitterSite`` → ``twitter:site``) and counter
(``kv.incr``) in the demo blog.

The guest answers ``{"ok": <what the helper returned>, "error": <Zig error name or null>}``, so each
test sees both the decoding and the mapping of the ABI's negative statuses to Zig errors.

Needs issue #16's host functions (settings.get, kv.incr, kv.cas, kv.set's ttlSeconds,
plugin.info) and the manifest's ``settings``; the SDK side is built and checked on any host by
``tests/runtime/test_zig_sdk.py``.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from functools import cache
from typing import Any

import pytest
from django.core.management import call_command

from gonext_plugins import bundle, lifecycle
from gonext_plugins.models import PluginKV
from gonext_plugins.registry import LoadedPlugin, registry
from tests.conftest import REPO

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(importlib.util.find_spec("ziglang") is None,
                       reason="ziglang is not installed (pip install ziglang)"),
]

HELPERS = REPO / "tests" / "guests" / "zig_sdk_helpers"
SEO = REPO / "examples" / "plugins" / "seo"

SETTINGS_SCHEMA = {
    "type": "object",
    "properties": {
        "twitterSite": {"type": "string", "title": "Twitter handle", "default": "", "maxLength": 16},
        "wordsPerMinute": {"type": "integer", "title": "Words per minute", "default": 200,
                           "minimum": 50, "maximum": 1000},
        "enabled": {"type": "boolean", "default": True},
        "apiKey": {"type": "string", "secret": True, "default": ""},
    },
}


@cache
def _wasm(project: str) -> bytes:
    from gonext_plugins.devtools.zigbuild import build_zig

    return build_zig(REPO / project).read_bytes()


@pytest.fixture
def helpers(make_bundle, activated) -> Callable[..., LoadedPlugin]:  # type: ignore[no-untyped-def]
    """``helpers(grant=("kv",))``: the helpers guest installed as ``helpers`` (asks for kv as an
    optional capability, declares SETTINGS_SCHEMA), active, as the registry loaded it."""

    def factory(grant: tuple[str, ...] = ("kv",)) -> LoadedPlugin:
        b = make_bundle(wasm=_wasm("tests/guests/zig_sdk_helpers"), slug="helpers", version="2.1.0",
                        capabilities=[], optionalCapabilities=["kv"], settings=SETTINGS_SCHEMA)
        loaded: LoadedPlugin = activated(b, grant)
        return loaded

    return factory


def run(loaded: LoadedPlugin, action: str, *args: Any) -> Any:
    return loaded.invoke("action", action, *args)


def ok(value: Any) -> dict[str, Any]:
    return {"ok": value, "error": None}


def failed(name: str) -> dict[str, Any]:
    return {"ok": None, "error": name}


def set_settings(slug: str, django_capture_on_commit_callbacks: Any, *pairs: str) -> None:
    """What the admin does: ``manage.py plugin settings SLUG KEY=VALUE...`` (issue #16's CLI)."""
    with django_capture_on_commit_callbacks(execute=True):
        call_command("plugin", "settings", slug, *pairs)


# --- settings ------------------------------------------------------------------------------------


def test_settings_defaults_one_key_and_all(helpers) -> None:  # type: ignore[no-untyped-def]
    p = helpers()
    assert run(p, "settings_get", "wordsPerMinute") == ok(200)
    assert run(p, "settings_get_string", "twitterSite") == ok("")
    assert run(p, "settings_get", "noSuchSetting") == ok(None)  # found: false → null
    every = run(p, "settings_all")["ok"]
    assert every["wordsPerMinute"] == 200 and every["enabled"] is True and every["twitterSite"] == ""
    assert run(p, "settings_as") == ok({"twitterSite": "", "wordsPerMinute": 200, "enabled": True})


def test_settings_follow_the_admin(helpers, django_capture_on_commit_callbacks) -> None:  # type: ignore[no-untyped-def]
    p = helpers()
    set_settings("helpers", django_capture_on_commit_callbacks, "twitterSite=@gonext", "wordsPerMinute=250",
                 "apiKey=s3cret")
    p = registry.get("helpers") or p
    assert run(p, "settings_get_string", "twitterSite") == ok("@gonext")
    assert run(p, "settings_as") == ok({"twitterSite": "@gonext", "wordsPerMinute": 250, "enabled": True})
    # Secrets are the plugin's own: it reads them (the API and the audit never show them).
    assert run(p, "settings_get", "apiKey") == ok("s3cret")


def test_a_setting_of_another_type_is_a_bad_result_not_a_crash(helpers) -> None:  # type: ignore[no-untyped-def]
    p = helpers()
    # wordsPerMinute is an integer; settingsGetAs([]const u8, ...) cannot decode it.
    assert run(p, "settings_get_string", "wordsPerMinute") == failed("HostBadResult")


# --- kv ------------------------------------------------------------------------------------------


def test_kv_incr_counts_from_zero(helpers) -> None:  # type: ignore[no-untyped-def]
    p = helpers()
    assert run(p, "kv_incr", "views", 1) == ok(1)
    assert run(p, "kv_incr", "views", 5) == ok(6)
    assert run(p, "kv_incr", "views", -2) == ok(4)
    assert run(p, "kv_get", "views") == ok(4)
    assert run(p, "kv_incr_loop", "loop", 50) == ok(50)
    assert PluginKV.objects.get(plugin_slug="helpers", key="loop").value == 50


def test_kv_incr_on_a_non_integer_is_a_host_error(helpers) -> None:  # type: ignore[no-untyped-def]
    p = helpers()
    assert run(p, "kv_set", "name", "text", None) == ok(True)
    assert run(p, "kv_incr", "name", 1) == failed("HostError")
    assert run(p, "kv_get", "name") == ok("text")


def test_kv_cas(helpers) -> None:  # type: ignore[no-untyped-def]
    p = helpers()
    # expected null (the Zig null literal) = "absent": the first claim wins, the second sees it.
    assert run(p, "kv_cas_absent", "lock", "first") == ok({"ok": True, "value": "first"})
    assert run(p, "kv_cas_absent", "lock", "second") == ok({"ok": False, "value": "first"})
    assert run(p, "kv_cas", "lock", "nope", "third") == ok({"ok": False, "value": "first"})
    assert run(p, "kv_cas", "lock", "first", {"n": 2}) == ok({"ok": True, "value": {"n": 2}})
    assert run(p, "kv_get", "lock") == ok({"n": 2})


def test_kv_set_with_ttl_get_list_delete(helpers) -> None:  # type: ignore[no-untyped-def]
    p = helpers()
    assert run(p, "kv_set", "cache.feed", ["a", "b"], 600) == ok(True)
    assert run(p, "kv_set", "cache.page", None, None) == ok(True)
    assert run(p, "kv_set", "other", 1, None) == ok(True)
    assert run(p, "kv_get", "cache.feed") == ok(["a", "b"])
    assert run(p, "kv_get", "cache.page") == ok(None)  # stored null reads as JSON null...
    assert run(p, "kv_get", "absent") == ok(None)  # ... and so does absent (helper: null)
    assert sorted(run(p, "kv_list", "cache.")["ok"]) == ["cache.feed", "cache.page"]
    assert sorted(run(p, "kv_list", None)["ok"]) == ["cache.feed", "cache.page", "other"]
    assert run(p, "kv_delete", "other") == ok(True)
    assert run(p, "kv_delete", "other") == ok(False)


@pytest.mark.parametrize(("action", "args"), [
    ("kv_incr", ("k", 1)), ("kv_get", ("k",)), ("kv_set", ("k", 1, 60)), ("kv_list", (None,)),
    ("kv_delete", ("k",)), ("kv_cas_absent", ("k", 1)),
])
def test_kv_helpers_without_the_grant_are_capability_denied(  # type: ignore[no-untyped-def]
        helpers, action: str, args: tuple[Any, ...]) -> None:
    p = helpers(grant=())
    assert run(p, action, *args) == failed("CapabilityDenied")
    assert not PluginKV.objects.filter(plugin_slug="helpers").exists()


def test_kv_helpers_stay_within_the_quota(helpers, settings) -> None:  # type: ignore[no-untyped-def]
    settings.GONEXT_PLUGINS = {**settings.GONEXT_PLUGINS, "KV_MAX_KEYS": 1}
    p = helpers()
    assert run(p, "kv_incr", "one", 1) == ok(1)
    assert run(p, "kv_incr", "two", 1) == failed("HostError")
    assert run(p, "kv_set", "three", 1, 60) == failed("HostError")


# --- plugin.info ---------------------------------------------------------------------------------


def test_plugin_info_is_parsed_into_a_struct(helpers) -> None:  # type: ignore[no-untyped-def]
    p = helpers()
    out = run(p, "plugin_info")["ok"]
    info = out["info"]
    assert info["slug"] == "helpers" and info["version"] == "2.1.0"
    assert "kv" in info["capabilities"] and "http.fetch" not in info["capabilities"]
    assert info["hosts"] == []
    assert info["hooks"] and all(isinstance(h, str) for h in info["hooks"])
    assert out["has_kv"] is True and out["has_http"] is False
    assert out["offers_wp_head"] is ("wp_head" in info["hooks"])


def test_plugin_info_without_optional_grants(helpers) -> None:  # type: ignore[no-untyped-def]
    out = run(helpers(grant=()), "plugin_info")["ok"]
    assert "kv" not in out["info"]["capabilities"]
    assert out["has_kv"] is False


# --- the SEO example -----------------------------------------------------------------------------


@pytest.fixture
def seo(publisher, django_capture_on_commit_callbacks) -> Callable[..., LoadedPlugin]:  # type: ignore[no-untyped-def]
    def factory(grant_kv: bool = True) -> LoadedPlugin:
        raw = bundle.sign(bundle.pack((SEO / "manifest.json").read_bytes(), _wasm("examples/plugins/seo")),
                          publisher.private_key)
        verified = bundle.read(raw)
        caps = [c for c in verified.manifest.all_capabilities if grant_kv or c != "kv"]
        with django_capture_on_commit_callbacks(execute=True):
            lifecycle.install(verified, caps, "tests", activate=True)
        loaded = registry.get("seo")
        assert loaded is not None
        return loaded

    return factory


def make_post() -> dict[str, object]:
    """A real post of the demo blog (save_post stores its score through posts.meta_set), as the
    site sends it to plugins."""
    from project.blog.models import Post

    post = Post.objects.create(title="How to grow tomatoes on a small balcony", slug="grow-tomatoes",
                               body="Tomatoes love sun. " * 40)
    return post.to_plugin_json()


def twitter_site(head: dict[str, Any]) -> list[str]:
    return [m["content"] for m in head["meta"] if m.get("name") == "twitter:site"]


def test_seo_twitter_site_comes_from_the_setting(seo, django_capture_on_commit_callbacks) -> None:  # type: ignore[no-untyped-def]
    p, post = seo(), make_post()
    assert twitter_site(p.invoke("action", "wp_head", post)) == []  # default: empty, omitted
    set_settings("seo", django_capture_on_commit_callbacks, "twitterSite=@gonext")
    p = registry.get("seo") or p
    assert twitter_site(p.invoke("action", "wp_head", post)) == ["@gonext"]


def test_seo_counts_scored_posts_with_kv_incr(seo) -> None:  # type: ignore[no-untyped-def]
    p, post = seo(), make_post()  # saving the post fires the blog's own save_post (the plugin counts it)
    counter = PluginKV.objects.filter(plugin_slug="seo", key="stats.posts_scored")
    before = counter.get().value if counter.exists() else 0
    for _ in range(3):
        p.invoke("action", "save_post", post)
    assert counter.get().value == before + 3


def test_seo_without_kv_scores_but_does_not_count(seo) -> None:  # type: ignore[no-untyped-def]
    p, post = seo(grant_kv=False), make_post()
    assert p.invoke("action", "save_post", post)["stored"] is True
    assert not PluginKV.objects.filter(plugin_slug="seo").exists()
