"""Preview (issue #20, item 1): a page rendered with one more plugin version active for that render
only, leaving no trace. Real wasmtime (a WAT guest written from ABI.md alone), the real database,
the demo site's real views and templates."""

from __future__ import annotations

import io
import json
import threading
from types import SimpleNamespace
from typing import Any

import pytest
from django.apps import apps
from django.core.cache import cache
from django.core.management import call_command
from django.test import Client

from gonext_plugins import hooks, lifecycle, preview
from gonext_plugins.errors import InvalidPreviewPath, PreviewError
from gonext_plugins.host_functions import kv
from gonext_plugins.models import Plugin, PluginJobRun, PluginKV, PluginState
from gonext_plugins.registry import registry
from project.blog.models import Post

from .conftest import guest_wasm

pytestmark = pytest.mark.django_db

CAPS = ["hooks.subscribe", "kv", "jobs.enqueue", "http.fetch"]
HOOKS = [{"name": "wp_head", "kind": "action"}, {"name": "the_content", "kind": "filter"}]
FIELDS: dict[str, Any] = {"slug": "previewer", "capabilities": CAPS, "hooks": HOOKS,
                          "jobs": [{"name": "ping"}], "http": {"allowedHosts": ["example.com"]}}
MARK = '<meta name="gn-preview" content="on">'


@pytest.fixture
def previewer(make_bundle):  # type: ignore[no-untyped-def]
    """The guest installed with every grant it asks for, inactive, its kv holding views=10."""
    result = lifecycle.install(make_bundle(wasm=guest_wasm("preview_guest"), **FIELDS), CAPS, "tests",
                               hosts=["example.com"])
    handle = SimpleNamespace(name="previewer", context=SimpleNamespace(slug="previewer"))
    kv.kv_set(handle, {"key": "views", "value": 10})
    return result.plugin


@pytest.fixture
def post() -> Post:
    return Post.objects.create(title="Hello", slug="hello", body="<p>Body of the post</p>")


def _footprint() -> dict[str, int]:
    """Rows of every table of the plugin app and the blog."""
    counts = {}
    for label in ("gonext_plugins", "blog"):
        for model in apps.get_app_config(label).get_models():
            counts[model._meta.label] = model.objects.count()
    return counts


def test_a_preview_shows_the_page_before_and_after_and_leaves_no_trace(previewer, post) -> None:  # type: ignore[no-untyped-def]
    cache.set("site-key", "site-value")
    cache_keys_before = sorted(cache._cache.keys())  # type: ignore[attr-defined]
    rows_before = _footprint()

    result = preview.preview(preview.candidate_for_plugin(previewer), "/posts/hello/")

    assert result.before.status == result.after.status == 200
    assert MARK not in result.before.html and MARK in result.after.html
    assert "+" + MARK in result.diff.splitlines()
    assert [(c["hook"], c["kind"], c["status"]) for c in result.calls] == [
        ("wp_head", "action", "ok"), ("the_content", "filter", "ok")]
    assert all(c["fuel"] > 0 and c["memory_bytes"] >= 65536 for c in result.calls)
    messages = [line["message"] for line in result.logs if line["source"] == "guest"]
    # kv: the real store's 10, then the preview's own writes read back by its later calls.
    assert messages[:2] == ['{"value":11}', '{"found":true,"value":11}']
    assert messages[4:6] == ['{"value":12}', '{"found":true,"value":12}']
    assert messages[2].startswith('{"id":"preview-') and messages[3] == "refused"
    assert [(w["function"], w["outcome"]) for w in result.writes] == [
        ("kv.incr", "throwaway"), ("jobs.enqueue", "not queued"), ("http.fetch", "refused")] * 2
    assert result.faults == []
    assert any("http.fetch is refused in a preview" in line["message"] for line in result.logs)

    # No trace: rows, kv, jobs, cache, and the plugin is as inactive as before.
    assert _footprint() == rows_before
    assert PluginKV.objects.get(plugin_slug="previewer", key="views").value == 10
    assert not PluginJobRun.objects.exists()
    assert sorted(cache._cache.keys()) == cache_keys_before  # type: ignore[attr-defined]
    assert registry.get("previewer") is None
    previewer.refresh_from_db()
    assert previewer.state == PluginState.INACTIVE
    assert MARK not in Client().get("/posts/hello/").content.decode()


def test_the_sites_own_writes_during_a_preview_are_rolled_back(previewer, post) -> None:  # type: ignore[no-untyped-def]
    def write_on_render(*args: Any) -> None:
        Post.objects.create(title="written by a view", slug="side-effect", body="x")

    with hooks.register_temporarily("wp_head", write_on_render):
        preview.preview(preview.candidate_for_plugin(previewer), "/")
    assert not Post.objects.filter(slug="side-effect").exists()


@pytest.mark.django_db(transaction=True)
def test_a_concurrent_request_never_sees_the_previewed_plugin(previewer, post) -> None:  # type: ignore[no-untyped-def]
    """While the preview's "after" page renders (held inside its wp_head, after the plugin's call),
    another thread's request of the same page runs: it does not get the plugin's markup, and the
    preview does."""
    inside, other_done = threading.Event(), threading.Event()
    seen: dict[str, str] = {}

    def other_request() -> None:
        inside.wait(30)
        seen["html"] = Client().get("/posts/hello/").content.decode()
        other_done.set()

    def hold(*args: Any) -> None:
        session = preview._session.get()
        if session is not None and session.calls and not other_done.is_set():  # the "after" render
            inside.set()
            other_done.wait(30)

    thread = threading.Thread(target=other_request)
    thread.start()
    with hooks.register_temporarily("wp_head", hold, priority=99):
        result = preview.preview(preview.candidate_for_plugin(previewer), "/posts/hello/")
    thread.join(30)
    assert other_done.is_set()
    assert MARK in result.after.html and MARK not in seen["html"]


def test_an_upgrade_preview_shows_the_new_version_instead_of_the_active_one(  # type: ignore[no-untyped-def]
        make_bundle, post, django_capture_on_commit_callbacks) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        lifecycle.install(make_bundle(wasm=guest_wasm("marker_guest"), slug="previewer",
                                      capabilities=["hooks.subscribe"], hooks=HOOKS),
                          ["hooks.subscribe"], "tests", activate=True)
    staged = make_bundle(wasm=guest_wasm("preview_guest"), version="2.0.0", **FIELDS)
    plugin = Plugin.objects.get(slug="previewer")
    result = preview.preview(preview.candidate_for_bundle(staged, plugin), "/posts/hello/")
    assert result.before_label == "with 1.0.0 (active now)" and result.origin == "staged"
    assert "gn-marker" in result.before.html and "gn-marker" not in result.after.html
    assert MARK in result.after.html
    assert "gn-marker" in Client().get("/posts/hello/").content.decode()  # the site still runs 1.0.0


def test_bad_paths_are_refused_with_a_typed_error(previewer) -> None:  # type: ignore[no-untyped-def]
    candidate = preview.candidate_for_plugin(previewer)
    for path in ("https://evil.example/", "//evil.example/x", "posts/hello/", "/admin/", "/api/plugins/",
                 "/\\evil", ""):
        with pytest.raises(InvalidPreviewPath) as caught:
            preview.preview(candidate, path)
        assert caught.value.code == "bad_preview_path"
    assert preview.check_path("/no-such-page/") == "/no-such-page/"  # its 404 is what a visitor sees


def test_an_active_plugin_with_one_version_has_nothing_to_preview(make_bundle) -> None:  # type: ignore[no-untyped-def]
    result = lifecycle.install(make_bundle(wasm=guest_wasm("preview_guest"), **FIELDS), CAPS, "tests",
                               activate=True, hosts=["example.com"])
    with pytest.raises(PreviewError) as caught:
        preview.candidate_for_plugin(result.plugin)
    assert caught.value.code == "preview_error"
    with pytest.raises(PreviewError):
        preview.candidate_for_plugin(result.plugin, "9.9.9")


def test_the_command_prints_the_preview_as_json(previewer, post) -> None:  # type: ignore[no-untyped-def]
    out = io.StringIO()
    call_command("plugin", "preview", "previewer", "/posts/hello/", "--json", stdout=out)
    data = json.loads(out.getvalue())
    assert data["version"] == "1.0.0" and MARK in data["after"]["html"]
    assert [c["hook"] for c in data["calls"]] == ["wp_head", "the_content"]
    out = io.StringIO()
    call_command("plugin", "preview", "previewer", "/posts/hello/", stdout=out)
    text = out.getvalue()
    assert "+" + MARK in text and "wp_head" in text and "not queued" in text
    assert PluginKV.objects.get(plugin_slug="previewer", key="views").value == 10


# --- the API and the admin --------------------------------------------------------------------------


@pytest.fixture
def admin_user(django_user_model):  # type: ignore[no-untyped-def]
    return django_user_model.objects.create_superuser("root", "root@example.com", "pw")


def test_the_api_previews_and_refuses_bad_input_in_its_error_shape(previewer, post, admin_user) -> None:  # type: ignore[no-untyped-def]
    from rest_framework.test import APIClient

    from .api.helpers import assert_error

    api = APIClient()
    api.force_authenticate(admin_user)
    response = api.post("/api/plugins/previewer/preview/", {"path": "/posts/hello/"}, format="json")
    assert response.status_code == 200, response.content
    data = response.json()
    assert data["origin"] == "installed" and MARK in data["after"]["html"]
    assert [w["outcome"] for w in data["writes"]][:3] == ["throwaway", "not queued", "refused"]
    assert_error(api.post("/api/plugins/previewer/preview/", {"path": "https://evil.example/"},
                          format="json"), 400, "bad_preview_path")
    assert_error(api.post("/api/plugins/previewer/preview/", {"path": "/", "version": "7.0.0"},
                          format="json"), 409, "preview_error")
    assert_error(api.post("/api/plugins/previewer/preview/", {"path": "/", "grants": []}, format="json"),
                 400)
    assert PluginKV.objects.get(plugin_slug="previewer", key="views").value == 10


def test_the_plugin_page_previews_in_sandboxed_frames(previewer, post, admin_user) -> None:  # type: ignore[no-untyped-def]
    from django.urls import reverse

    client = Client()
    client.force_login(admin_user)
    page = client.get(reverse("admin:gonext_plugins_plugin_change", args=[previewer.pk])).content.decode()
    url = reverse("admin:gonext_plugins_plugin_preview", args=[previewer.pk])
    assert url in page
    response = client.post(url, {"path": "/posts/hello/", "version": ""})
    html = response.content.decode()
    assert response.status_code == 200 and 'id="gn-preview-result"' in html
    assert html.count('sandbox=""') == 2 and "srcdoc=" in html
    assert "gn-diff-add" in html and "&lt;meta name=&quot;gn-preview&quot;" in html
    assert "script-src" in response["Content-Security-Policy"]
    refused = client.post(url, {"path": "/admin/"})
    text = refused.content.decode()
    assert "the admin" in text and 'id="gn-preview-result"' not in text


TRAPPING = """
(module
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 1024))
  (func (export "gn_alloc") (param $size i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $heap))
    (global.set $heap (i32.add (global.get $heap) (local.get $size)))
    (local.get $p))
  (func (export "gn_free") (param i32 i32))
  (func (export "gn_handle_hook") (param i32 i32 i32 i32) (result i64)
    unreachable))
"""


def test_a_fault_in_preview_is_reported_not_recorded_and_the_page_still_renders(make_bundle, post) -> None:  # type: ignore[no-untyped-def]
    import wasmtime

    from gonext_plugins.models import PluginFault

    installed = lifecycle.install(make_bundle(wasm=wasmtime.wat2wasm(TRAPPING), slug="trapper",
                                              capabilities=["hooks.subscribe"], hooks=HOOKS),
                                  ["hooks.subscribe"], "tests").plugin
    result = preview.preview(preview.candidate_for_plugin(installed), "/posts/hello/")
    assert result.after.status == 200 and "Body of the post" in result.after.html
    assert [c["status"] for c in result.calls] == ["trap", "trap"]
    assert [f["hook"] for f in result.faults] == ["wp_head", "the_content"]
    assert all(f["kind"] == "trap" and "unreachable" in f["message"] for f in result.faults)
    assert not PluginFault.objects.exists()  # a preview never counts towards quarantine
    installed.refresh_from_db()
    assert installed.state == PluginState.INACTIVE


def test_the_site_suggests_its_home_and_latest_post(post) -> None:  # type: ignore[no-untyped-def]
    assert preview.suggestions() == [("/", "Home page"), ("/posts/hello/", "Latest post: Hello")]


def test_a_failing_suggestions_hook_falls_back_to_the_home_page(settings) -> None:  # type: ignore[no-untyped-def]
    settings.GONEXT_PLUGINS = {**settings.GONEXT_PLUGINS, "PREVIEW_SUGGESTIONS": "builtins.len"}
    assert preview.suggestions() == [("/", "Home page")]


def test_the_upgrade_dialog_previews_the_held_bundle(make_bundle, publisher, post, admin_user,  # type: ignore[no-untyped-def]
                                                     django_capture_on_commit_callbacks) -> None:
    from django.urls import reverse

    from gonext_plugins.admin_views import hold_upload

    from .api.helpers import signed_bundle

    with django_capture_on_commit_callbacks(execute=True):
        installed = lifecycle.install(make_bundle(wasm=guest_wasm("marker_guest"), slug="previewer",
                                                  capabilities=["hooks.subscribe"], hooks=HOOKS),
                                      ["hooks.subscribe"], "tests", activate=True).plugin
    raw = signed_bundle(publisher.private_key, guest_wasm("preview_guest"), version="2.0.0", **FIELDS)
    token = hold_upload(raw, admin_user, "upgrade:previewer")
    client = Client()
    client.force_login(admin_user)
    dialog = client.get(reverse("admin:gonext_plugins_plugin_upgrade_confirm", args=[installed.pk, token]))
    url = reverse("admin:gonext_plugins_plugin_upgrade_preview", args=[installed.pk, token])
    assert url in dialog.content.decode()
    html = client.post(url, {"path": "/posts/hello/"}).content.decode()
    assert "Before: with 1.0.0 (active now)" in html and "After: with 2.0.0" in html
    assert "gn-diff-del" in html and "gn-marker" in html  # the old version's marker goes away
    installed.refresh_from_db()
    assert installed.active_version.version == "1.0.0"  # nothing was upgraded


def test_a_page_over_the_html_cap_is_kept_truncated_and_says_so(previewer, post, settings) -> None:  # type: ignore[no-untyped-def]
    settings.GONEXT_PLUGINS = {**settings.GONEXT_PLUGINS, "PREVIEW_MAX_HTML_BYTES": 1024}
    post.body = "<p>long</p>" * 500
    post.save()
    result = preview.preview(preview.candidate_for_plugin(previewer), "/posts/hello/")
    assert result.before.truncated and result.after.truncated
    assert len(result.after.html.encode()) <= 1024 and result.after.html.startswith("<!doctype html>")
