"""Plugin settings (issue #16, item 1): declared in the manifest, changed by an admin through
``lifecycle.settings`` (the API and the command line), read by a real guest with ``settings.get``,
carried over on upgrade where the new schema accepts them.

The guest is ``tests/guests/hostcall_guest.wat``: a filter whose hook name is the host function and
whose value is the payload answers ``{"value": <result>}`` or ``{"value": {"hc": -N}}``.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.core.management import call_command
from rest_framework.test import APIClient

from gonext_plugins import lifecycle, manifest
from gonext_plugins.errors import InvalidSettings, ManifestError
from gonext_plugins.models import AuditEvent, Plugin, PluginState
from gonext_plugins.registry import LoadedPlugin, registry
from tests.api.helpers import assert_error
from tests.conftest import guest_wasm, make_manifest

pytestmark = pytest.mark.django_db

SECRET = "sk-live-0123456789"

SETTINGS: dict[str, Any] = {
    "type": "object",
    "properties": {
        "wordsPerMinute": {"type": "integer", "title": "Words per minute", "minimum": 50,
                           "maximum": 1000, "default": 200},
        "twitter": {"type": "string", "maxLength": 15, "default": "@gonext"},
        "apiKey": {"type": "string", "secret": True, "minLength": 8},
        "site": {"type": "string", "format": "url"},
        "style": {"type": "string", "enum": ["short", "long"], "default": "short"},
        "enabled": {"type": "boolean", "default": True},
    },
}


def with_settings(version: str = "1.0.0", **changes: Any) -> dict[str, Any]:
    """The manifest fields of a plugin declaring SETTINGS, with some properties replaced."""
    properties = {**SETTINGS["properties"], **changes}
    return {"version": version,
            "settings": {"type": "object", "properties": {k: v for k, v in properties.items() if v}}}


@pytest.fixture
def plugin(make_bundle, django_capture_on_commit_callbacks) -> Callable[..., LoadedPlugin]:  # type: ignore[no-untyped-def]
    def factory(**fields: Any) -> LoadedPlugin:
        bundle = make_bundle(wasm=guest_wasm("hostcall_guest"), **(fields or with_settings()))
        with django_capture_on_commit_callbacks(execute=True):
            lifecycle.install(bundle, ["kv"], "tests", activate=True)
        loaded = registry.get(bundle.manifest.slug)
        assert loaded is not None
        return loaded

    return factory


def read(payload: Any, slug: str = "demo") -> Any:
    """One guest call making one ``settings.get`` host call, through the registry as a hook would."""
    loaded = registry.get(slug)
    assert loaded is not None
    return loaded.invoke("filter", "settings.get", payload)


def update(changes: dict[str, Any], capture: Any, slug: str = "demo") -> lifecycle.Result:
    with capture(execute=True):
        return lifecycle.settings.update(slug, changes, "tests")


# --- the manifest -------------------------------------------------------------------------------


def test_manifest_settings_problems_are_listed_with_paths() -> None:
    bad = {"type": "object", "required": ["missing"], "properties": {
        "wpm": {"type": "integer", "minimum": 50, "default": 10},
        "flag": {"type": "boolean", "format": "url"},
        "mode": {"type": "string", "enum": ["a", 3]},
        "home": {"type": "string", "format": "url", "default": "javascript:alert(1)"},
        "bad name": {"type": "string"},
        "color": {"type": "object"},
    }}
    with pytest.raises(ManifestError) as caught:
        manifest.validate(make_manifest(settings=bad))
    found = dict(caught.value.problems)
    assert found['$.settings.properties.wpm.default'] == "must be at least 50"
    assert found["$.settings.properties.flag.format"] == "does not apply to a boolean setting"
    assert found["$.settings.properties.mode.enum[1]"] == "must be a string, not an integer"
    assert found["$.settings.properties.home.default"] == "must be a valid url"
    assert found["$.settings.required[0]"] == 'names "missing", which is not a declared setting'
    assert "$.settings.properties.color.type" in found
    assert found["$.settings.properties[\"bad name\"]"].startswith("a setting name is a letter")


def test_a_valid_declaration_is_kept_in_order() -> None:
    m = manifest.validate(make_manifest(**with_settings()))
    assert list(m.settings) == list(SETTINGS["properties"])
    assert m.settings["apiKey"]["secret"] is True


# --- the guest reads them -----------------------------------------------------------------------


def test_guest_reads_defaults_then_saved_values_and_secrets(plugin,  # type: ignore[no-untyped-def]
                                                            django_capture_on_commit_callbacks) -> None:
    plugin()
    assert read({}) == {"settings": {"wordsPerMinute": 200, "twitter": "@gonext",
                                               "style": "short", "enabled": True}}
    assert read({"key": "apiKey"}) == {"found": False, "value": None}
    update({"wordsPerMinute": 250, "apiKey": SECRET}, django_capture_on_commit_callbacks)
    # The committed change bumped the generation: the next call sees it, with no restart.
    assert read({"key": "wordsPerMinute"}) == {"found": True, "value": 250}
    assert read({"key": "apiKey"}) == {"found": True, "value": SECRET}
    update({"wordsPerMinute": None}, django_capture_on_commit_callbacks)  # back to the default
    assert read({"key": "wordsPerMinute"}) == {"found": True, "value": 200}


def test_settings_get_needs_no_grant_and_refuses_unknown_fields(plugin) -> None:  # type: ignore[no-untyped-def]
    loaded = plugin()
    assert "kv" in loaded.capabilities and "self" in loaded.capabilities
    assert read({"key": "twitter", "plugin": "other"}) == {"hc": -3}
    assert read({"slug": "other"}) == {"hc": -3}
    assert read({"key": 5}) == {"hc": -1}  # a field of the wrong type: refused, -1


def test_a_plugin_reads_only_its_own_settings(plugin, django_capture_on_commit_callbacks) -> None:  # type: ignore[no-untyped-def]
    plugin()
    plugin(slug="other", **with_settings(twitter={"type": "string", "default": "@other"}))
    update({"twitter": "@mine"}, django_capture_on_commit_callbacks)
    assert read({"key": "twitter"}, slug="other") == {"found": True, "value": "@other"}
    assert read({"key": "twitter"}) == {"found": True, "value": "@mine"}


def test_hook_calls_make_no_query_when_nothing_changed(plugin, django_assert_num_queries) -> None:  # type: ignore[no-untyped-def]
    plugin()
    read({})
    registry.sync()  # the generation is read at most every SYNC_INTERVAL; read it now, once
    with django_assert_num_queries(0):
        loaded = registry.get("demo", sync=False)
        assert loaded is not None
        assert loaded.invoke("filter", "settings.get", {"key": "style"}) == {"found": True, "value": "short"}


# --- changing them ------------------------------------------------------------------------------


def test_refused_values_name_every_field_and_save_nothing(plugin, django_capture_on_commit_callbacks) -> None:  # type: ignore[no-untyped-def]
    plugin()
    with pytest.raises(InvalidSettings) as caught:
        update({"wordsPerMinute": 5, "twitter": "x" * 20, "site": "ftp://example.com", "style": "huge",
                "enabled": "yes", "apiKey": "short", "nope": 1}, django_capture_on_commit_callbacks)
    assert [field for field, _ in caught.value.problems] == ["nope"]  # unknown names first, alone
    with pytest.raises(InvalidSettings) as caught:
        update({"wordsPerMinute": 5, "twitter": "x" * 20, "site": "ftp://example.com", "style": "huge",
                "enabled": "yes", "apiKey": "short"}, django_capture_on_commit_callbacks)
    problems = dict(caught.value.problems)
    assert problems == {"wordsPerMinute": "must be at least 50",
                        "twitter": "must be at most 15 characters long",
                        "site": "must be a valid url", "style": 'must be one of "short", "long"',
                        "enabled": "must be a boolean, not a string",
                        "apiKey": "must be at least 8 characters long"}
    assert "short" not in str(caught.value).replace('"short"', "")  # the secret's value is not echoed
    assert Plugin.objects.get(slug="demo").settings == {}
    assert not AuditEvent.objects.filter(action="settings").exists()


def test_every_change_is_audited_with_secrets_redacted(plugin, django_capture_on_commit_callbacks) -> None:  # type: ignore[no-untyped-def]
    plugin()
    update({"apiKey": SECRET, "twitter": "@blog"}, django_capture_on_commit_callbacks)
    assert not update({"twitter": "@blog"}, django_capture_on_commit_callbacks).changed
    event = AuditEvent.objects.get(action="settings")
    assert event.details["changed"] == ["apiKey", "twitter"]
    assert event.details["after"] == {"apiKey": "[redacted]", "twitter": "@blog"}
    assert SECRET not in json.dumps([e.details for e in AuditEvent.objects.all()])


# --- upgrades -----------------------------------------------------------------------------------


def test_upgrade_carries_values_over_and_new_keys_take_defaults(plugin, make_bundle,  # type: ignore[no-untyped-def]
                                                                django_capture_on_commit_callbacks) -> None:
    plugin()
    update({"wordsPerMinute": 300, "apiKey": SECRET}, django_capture_on_commit_callbacks)
    newer = make_bundle(wasm=guest_wasm("hostcall_guest"), **with_settings(
        "2.0.0", twitter=None, lang={"type": "string", "default": "en"}))
    with django_capture_on_commit_callbacks(execute=True):
        lifecycle.upgrade("demo", newer, ["kv"], "tests")
    assert read({}) == {"settings": {"wordsPerMinute": 300, "apiKey": SECRET, "style": "short",
                                               "enabled": True, "lang": "en"}}


def test_a_stored_value_the_new_schema_refuses_blocks_activation_until_fixed(  # type: ignore[no-untyped-def]
        plugin, make_bundle, django_capture_on_commit_callbacks) -> None:
    plugin()
    update({"wordsPerMinute": 300}, django_capture_on_commit_callbacks)
    stricter = make_bundle(wasm=guest_wasm("hostcall_guest"), **with_settings(
        "2.0.0", wordsPerMinute={"type": "integer", "minimum": 100, "maximum": 250, "default": 200}))
    with pytest.raises(InvalidSettings) as caught:  # running: the upgrade is refused, 1.0.0 keeps running
        lifecycle.upgrade("demo", stricter, ["kv"], "tests")
    assert caught.value.problems == [("wordsPerMinute", "must be at most 250")]
    assert "version 2.0.0 does not accept the plugin's settings" in caught.value.message
    assert Plugin.objects.get(slug="demo").active_version.version == "1.0.0"  # type: ignore[union-attr]
    with django_capture_on_commit_callbacks(execute=True):
        lifecycle.deactivate("demo", "tests")
        lifecycle.upgrade("demo", stricter, ["kv"], "tests")  # inactive: installs, runs nothing
    with pytest.raises(InvalidSettings, match="wordsPerMinute: must be at most 250"):
        lifecycle.activate("demo", "tests")
    assert Plugin.objects.get(slug="demo").state == PluginState.INACTIVE
    update({"wordsPerMinute": 240}, django_capture_on_commit_callbacks)  # checked against 2.0.0
    with django_capture_on_commit_callbacks(execute=True):
        lifecycle.activate("demo", "tests")
    assert read({"key": "wordsPerMinute"}) == {"found": True, "value": 240}


# --- the API ------------------------------------------------------------------------------------


def _client(*codenames: str) -> APIClient:
    user = User.objects.create_user(f"u{User.objects.count()}", password="x")
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    client = APIClient()
    client.force_authenticate(User.objects.get(pk=user.pk))
    return client


def test_api_shows_settings_with_secrets_only_as_set(plugin, django_capture_on_commit_callbacks) -> None:  # type: ignore[no-untyped-def]
    plugin()
    update({"apiKey": SECRET}, django_capture_on_commit_callbacks)
    response = _client("view_plugin").get("/api/plugins/demo/settings/")
    assert response.status_code == 200, response.content
    assert SECRET.encode() not in response.content
    by_name = {entry["name"]: entry for entry in response.json()["settings"]}
    assert by_name["apiKey"]["set"] is True and "value" not in by_name["apiKey"]
    assert by_name["wordsPerMinute"] == {
        "name": "wordsPerMinute", "type": "integer", "title": "Words per minute", "description": "",
        "secret": False, "required": False, "set": False, "minimum": 50, "maximum": 1000, "default": 200,
        "value": 200}


def test_api_put_validates_saves_and_needs_its_permission(plugin) -> None:  # type: ignore[no-untyped-def]
    plugin()
    url = "/api/plugins/demo/settings/"
    assert_error(_client("view_plugin").put(url, {"twitter": "@x"}, format="json"), 403)
    editor = _client("view_plugin", "change_plugin_settings")
    data = assert_error(editor.put(url, {"wordsPerMinute": 1, "site": "nope"}, format="json"), 400,
                        "invalid_settings")
    assert {p["field"] for p in data["problems"]} == {"wordsPerMinute", "site"}
    response = editor.put(url, {"wordsPerMinute": 400, "apiKey": SECRET}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["changed"] is True and SECRET.encode() not in response.content
    assert Plugin.objects.get(slug="demo").settings == {"wordsPerMinute": 400, "apiKey": SECRET}


# --- the command line ---------------------------------------------------------------------------


def test_cli_sets_typed_values_and_never_prints_a_secret(plugin) -> None:  # type: ignore[no-untyped-def]
    plugin()
    out = io.StringIO()
    call_command("plugin", "settings", "demo", "wordsPerMinute=320", "enabled=false", f"apiKey={SECRET}",
                 stdout=out)
    assert Plugin.objects.get(slug="demo").settings == {"wordsPerMinute": 320, "enabled": False,
                                                        "apiKey": SECRET}
    out = io.StringIO()
    call_command("plugin", "settings", "demo", stdout=out)
    shown = out.getvalue()
    assert "wordsPerMinute = 320" in shown and "apiKey = (set)" in shown and SECRET not in shown
    assert 'style = "short"  [default]' in shown
    call_command("plugin", "settings", "demo", "--reset", "wordsPerMinute", stdout=io.StringIO())
    assert "wordsPerMinute" not in Plugin.objects.get(slug="demo").settings


def test_cli_refusal_names_the_field(plugin) -> None:  # type: ignore[no-untyped-def]
    from django.core.management.base import CommandError

    plugin()
    with pytest.raises(CommandError, match=r"invalid_settings: .*wordsPerMinute: must be an integer"):
        call_command("plugin", "settings", "demo", "wordsPerMinute=fast", stdout=io.StringIO())


# --- the admin's form ---------------------------------------------------------------------------


def test_admin_form_renders_refuses_at_the_field_saves_and_hides_the_secret(  # type: ignore[no-untyped-def]
        plugin, django_capture_on_commit_callbacks) -> None:
    from django.test import Client

    plugin()
    User.objects.create_superuser("root", password="pw")
    client = Client()
    client.force_login(User.objects.get(username="root"))
    pk = Plugin.objects.get(slug="demo").pk
    url = f"/admin/gonext_plugins/plugin/{pk}/settings/"
    assert f'href="{url}"'.encode() in client.get(f"/admin/gonext_plugins/plugin/{pk}/change/").content
    page = client.get(url).content.decode()
    assert 'name="wordsPerMinute"' in page and 'type="password"' in page and "secret: not set" in page
    refused = client.post(url, {"wordsPerMinute": "10", "apiKey": SECRET, "site": "nope"})
    assert refused.status_code == 200
    html = refused.content.decode()
    assert "must be at least 50" in html and "must be a valid url" in html and SECRET not in html
    assert Plugin.objects.get(slug="demo").settings == {}
    with django_capture_on_commit_callbacks(execute=True):
        saved = client.post(url, {"wordsPerMinute": "260", "apiKey": SECRET, "enabled": "false"})
    assert saved.status_code == 302
    assert Plugin.objects.get(slug="demo").settings == {"wordsPerMinute": 260, "apiKey": SECRET,
                                                        "enabled": False}
    page = client.get(url).content.decode()
    assert SECRET not in page and "secret: set" in page and 'value="260"' in page
    with django_capture_on_commit_callbacks(execute=True):  # the secret left blank is kept
        client.post(url, {"wordsPerMinute": "", "enabled": "false"})
    assert Plugin.objects.get(slug="demo").settings == {"apiKey": SECRET, "enabled": False}
    # A form opened before someone else saved (Back, another tab) puts nothing back over their change.
    page = client.get(url).content.decode()
    seen = re.search(r'name="__settings_seen" value="([0-9a-f]+)"', page).group(1)  # type: ignore[union-attr]
    assert SECRET not in seen
    with django_capture_on_commit_callbacks(execute=True):
        lifecycle.settings.update("demo", {"wordsPerMinute": 300}, "another admin")
    stale = client.post(url, {"wordsPerMinute": "", "enabled": "false", "__settings_seen": seen}, follow=True)
    assert "changed after this form was opened" in stale.content.decode()
    assert Plugin.objects.get(slug="demo").settings["wordsPerMinute"] == 300
    with django_capture_on_commit_callbacks(execute=True):
        lifecycle.settings.update("demo", {"wordsPerMinute": None}, "another admin")
    with django_capture_on_commit_callbacks(execute=True):  # only spaces is blank too: not a value
        client.post(url, {"site": "   ", "apiKey": "  ", "enabled": "false"})
    assert Plugin.objects.get(slug="demo").settings == {"apiKey": SECRET, "enabled": False}
    assert read({"key": "apiKey"}) == {"found": True, "value": SECRET}
