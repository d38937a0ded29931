"""Issue #13, item 10: the small holes, one test (or a few) each.

Each test here failed on main before its fix: a pattern that matched a value with a trailing
newline, a malformed body that became a 500, a source map parsed on every trap, a damaged blob
reused, an upgrade that changed publisher or re-asked a dropped capability without consent, and
``/metrics`` open to anything on loopback.
"""

from __future__ import annotations

import hashlib
import io
import json
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.db.models.signals import pre_save
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from gonext_plugins import checks, conf, lifecycle, manifest, signing
from gonext_plugins import registry as registry_module
from gonext_plugins.devtools import sourcemap, traps
from gonext_plugins.errors import ConsentRequired, ManifestError, PluginTrap
from gonext_plugins.models import AuditEvent, Plugin, PluginFault, PluginVersion
from gonext_plugins.registry import registry
from gonext_plugins.storage import blob_name, get_storage, read_blob, save_blob

from ..api.helpers import assert_error, signed_bundle
from ..conftest import guest_wasm, make_manifest
from ..test_api import client_for, install, make_user, upload


@pytest.fixture
def admin() -> APIClient:
    """An API client authenticated as a superuser called root."""
    return client_for(make_user("root", superuser=True))


@pytest.fixture
def installed(publisher: Any, make_bundle: Any) -> Plugin:
    """Plugin ``demo`` 1.0.0 (asks for kv, optional posts.read), installed with kv, inactive."""
    return lifecycle.install(make_bundle(optionalCapabilities=["posts.read"]), ["kv"], "tests").plugin

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



# --- every malformed input is a 4xx in the one error shape ------------------------------------------

DEEP = 900  # past json's own limit for a recursive walk, well under the parser's


def _raw_bundle(manifest_text: str) -> bytes:
    """A bundle whose manifest.json is exactly ``manifest_text`` (``bundle.pack`` would refuse it)."""
    from gonext_plugins import bundle

    return bundle._write_zip({bundle.MANIFEST: manifest_text.encode(), bundle.WASM: guest_wasm()})


def _manifest_text(**raw_fields: str) -> str:
    """The test manifest as JSON, with some fields' JSON text given verbatim."""
    text = json.dumps(make_manifest())
    extra = "".join(f', "{name}": {value}' for name, value in raw_fields.items())
    return text[:-1] + extra + "}"


@pytest.mark.django_db
def test_deeply_nested_unique_items_in_a_manifest_is_a_400(admin: APIClient) -> None:
    deep = "[" * DEEP + "]" * DEEP
    raw = _raw_bundle(_manifest_text(optionalCapabilities=f"[{deep}, {deep}]"))
    data = assert_error(install(admin, raw), 400, "bad_manifest")
    assert "nested more than" in data["detail"]
    assert not Plugin.objects.exists()


@pytest.mark.django_db
def test_a_lone_surrogate_in_a_manifest_is_a_400(admin: APIClient) -> None:
    raw = _raw_bundle(_manifest_text(homepage='"https://example.com/\\ud800"'))
    data = assert_error(install(admin, raw), 400, "bad_manifest")
    assert data["problems"][0]["path"] == "$.homepage"
    assert not Plugin.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("body", [
    '{"version": "\\ud800"}',
    '{"\\udfff": "1.0.0"}',
    '{"version": ' + "[" * 5000 + "]" * 5000 + "}",
    '{"version": ' + "[" * DEEP + "]" * DEEP + "}",
])
def test_malformed_json_bodies_are_a_400(admin: APIClient, installed: Plugin, body: str) -> None:
    """A lone surrogate would reach the database (or the renderer) and nesting the interpreter's
    recursion limit: both were 500s."""
    response = admin.post(f"/api/plugins/{installed.slug}/rollback/", body, content_type="application/json")
    assert_error(response, 400, "parse_error")


@pytest.mark.django_db
def test_limits_of_the_wrong_type_are_a_manifest_problem(admin: APIClient) -> None:
    """JSON Schema calls ``32.0`` an integer; the runtime's limits do not, so the admin dialog (and
    the activation) failed later with a 500."""
    raw = _raw_bundle(_manifest_text(limits='{"memoryPages": 32.0, "fuel": 1000.0}'))
    data = assert_error(install(admin, raw), 400, "bad_manifest")
    assert {p["path"] for p in data["problems"]} == {"$.limits.memoryPages", "$.limits.fuel"}
    staff = Client()
    staff.force_login(User.objects.get(username="root"))
    page = staff.post(reverse("admin:gonext_plugins_plugin_install"),
                      {"bundle": SimpleUploadedFile("p.gnplugin", raw)})
    assert page.status_code == 200
    assert "memoryPages" in page.content.decode()


@pytest.mark.django_db
def test_concurrent_upgrades_to_one_version_are_a_409(admin: APIClient, installed: Plugin,
                                                      publisher: Any, make_bundle: Any) -> None:
    """Two upgrades to 2.0.0 both pass the "is it installed?" check; the second insert hit the
    unique (plugin, version) constraint and was a 500. The race is made deterministic: the moment
    this request is about to store its version row, a competing upgrade stores the same version."""
    competitor = make_bundle(version="2.0.0", wasm=guest_wasm("minimal"))
    raced: list[bool] = []

    def race(sender: Any, instance: PluginVersion, **kwargs: Any) -> None:
        if instance.version == "2.0.0" and not raced:
            raced.append(True)
            lifecycle.upgrade(installed.slug, competitor, [], "competitor")

    pre_save.connect(race, sender=PluginVersion)
    try:
        response = admin.post(f"/api/plugins/{installed.slug}/upgrade/",
                              {"bundle": upload(signed_bundle(publisher.private_key, version="2.0.0"))},
                              format="multipart")
    finally:
        pre_save.disconnect(race, sender=PluginVersion)
    assert raced
    assert_error(response, 409, "version_conflict")
    installed.refresh_from_db()
    assert installed.active_version.version == "1.0.0"


# --- unknown body fields are a 400 ------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(("path", "body"), [
    ("/api/plugins/demo/rollback/", {"version": "1.0.0", "verison": "1.0.0"}),
    ("/api/plugins/demo/grants/", {"grant": ["kv"], "grants": ["posts.read"]}),
    ("/api/plugins/demo/activate/", {"force": True}),
    ("/api/keys/", {"name": "k", "public_key": "x" * 44, "trusted": False}),
])
def test_unknown_json_body_fields_are_a_400(admin: APIClient, installed: Plugin, path: str,
                                            body: dict[str, Any]) -> None:
    data = assert_error(admin.post(path, body, format="json"), 400, "invalid_request")
    assert "unknown field" in data["detail"]
    installed.refresh_from_db()
    assert installed.state == "inactive"


@pytest.mark.django_db
def test_unknown_multipart_fields_are_a_400(admin: APIClient, publisher: Any) -> None:
    response = install(admin, signed_bundle(publisher.private_key), "kv", activte="true")
    data = assert_error(response, 400, "invalid_request")
    assert data["problems"][0]["path"] == "activte"
    assert not Plugin.objects.exists()


# --- trap reports parse a module's source map once, size-capped ---------------------------------------


def _with_map(wasm: bytes, padding: int) -> bytes:
    """``wasm`` embedding a valid source map of about ``padding`` bytes (its sources' content)."""
    smap = json.dumps({"version": 3, "sources": ["plugin.wat"], "names": [], "mappings": "AAAA",
                       "sourcesContent": ["x" * padding]})
    return sourcemap.with_source_mapping_url(wasm, sourcemap.data_url(smap))


def _trap_twice(make_bundle: Any, wasm: bytes) -> list[dict[str, Any]]:
    """Install ``wasm`` (the ABI guest) as an active plugin, trap it twice, return the reports."""
    bundle = make_bundle(wasm=wasm, capabilities=["hooks.subscribe"],
                         hooks=[{"name": "panic", "kind": "action"}])
    lifecycle.install(bundle, ["hooks.subscribe"], "tests", activate=True)
    registry.sync(force=True)
    loaded = registry.get("demo")
    assert loaded is not None
    for _ in range(2):
        with pytest.raises(PluginTrap):
            loaded.invoke("action", "panic")
    return [fault.report for fault in PluginFault.objects.order_by("id")]


@pytest.mark.django_db
def test_a_source_map_over_the_cap_is_not_parsed(make_bundle: Any, settings: Any) -> None:
    settings.GONEXT_PLUGINS = {**getattr(settings, "GONEXT_PLUGINS", {}),
                               "TRAP_SOURCE_MAP_MAX_BYTES": 64 * 1024}
    reports = _trap_twice(make_bundle, _with_map(guest_wasm(), 256 * 1024))
    for report in reports:
        assert "over the 65,536 byte cap" in report["source_map_error"], report
        assert report["frames"] and report["frames"][0]["location"].endswith("(no source map)")


@pytest.mark.django_db
def test_trap_reports_parse_the_source_map_once_per_module(make_bundle: Any) -> None:
    wasm = _with_map(guest_wasm(), 1024)
    reports = _trap_twice(make_bundle, wasm)
    assert [r["source_map"] for r in reports] == ["sourceMappingURL (embedded)"] * 2
    sha = hashlib.sha256(wasm).hexdigest()
    cache = registry_module._trap_debug_info
    parsed = cache.get(sha, b"not read: the entry is cached",
                       max_map_bytes=conf.settings.TRAP_SOURCE_MAP_MAX_BYTES)
    assert parsed.source_map is not None and parsed.map_source == "sourceMappingURL (embedded)"


def test_the_parsed_map_cache_is_bounded_and_keeps_the_recent_ones() -> None:
    cache = traps.DebugInfoCache(maxsize=2)
    modules = [_with_map(guest_wasm(), n) for n in (10, 20, 30)]
    shas = [hashlib.sha256(m).hexdigest() for m in modules]
    first = cache.get(shas[0], modules[0])
    assert cache.get(shas[0], modules[0]) is first  # parsed once
    cache.get(shas[1], modules[1])
    cache.get(shas[0], modules[0])  # the first is now the most recent
    cache.get(shas[2], modules[2])  # evicts the second
    assert len(cache) == 2
    assert cache.get(shas[0], modules[0]) is first


# --- blobs: a damaged one is rewritten, orphaned ones are collected -------------------------------


def _damage(name: str) -> None:
    """Replace a stored blob's bytes (a torn write, a bad disk) keeping its name."""
    storage = get_storage()
    storage.delete(name)
    assert storage.save(name, ContentFile(b"\0asm torn write")) == name


@pytest.mark.django_db
def test_a_damaged_blob_at_its_content_address_is_rewritten(make_bundle: Any) -> None:
    bundle = make_bundle()
    name, _ = save_blob(bundle.wasm, bundle.wasm_sha256)  # left by an earlier, failed install
    _damage(name)
    result = lifecycle.install(bundle, ["kv"], "tests", activate=True)  # activation loads the blob
    assert result.plugin.state == "active"
    assert read_blob(name, bundle.wasm_sha256) == bundle.wasm


@pytest.mark.django_db
def test_plugin_gc_collects_orphaned_blobs_only(make_bundle: Any) -> None:
    from gonext_plugins.management.commands.plugin import Command

    kept = make_bundle()
    lifecycle.install(kept, ["kv"], "tests")
    orphan = make_bundle(wasm=guest_wasm("minimal"))
    orphan_name, _ = save_blob(orphan.wasm, orphan.wasm_sha256)  # a crash before its version row

    def gc(*args: str) -> tuple[int, str]:
        command, out = Command(), io.StringIO()
        call_command(command, "gc", "--grace", "0", *args, stdout=out, stderr=io.StringIO())
        return command.exit_code, out.getvalue()

    code, out = gc("--dry-run")
    assert code == 0 and orphan_name in out and "would delete 1 orphaned blob" in out
    assert get_storage().exists(orphan_name)
    code, out = gc()
    assert code == 0 and "deleted 1 orphaned blob" in out
    assert not get_storage().exists(orphan_name)
    assert get_storage().exists(blob_name(kept.wasm_sha256))
    assert gc()[0] == 3  # nothing left to collect


# --- /metrics access is a setting, not "loopback is trusted" ----------------------------------------

SCRAPER_TOKEN = "scraper-token-0123456789abcdef"


@pytest.mark.django_db
def test_metrics_are_not_public_behind_a_reverse_proxy_on_the_same_host() -> None:
    """A reverse proxy on the same host forwards every public request from 127.0.0.1."""
    proxied = Client(REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="203.0.113.9")
    assert proxied.get("/metrics").status_code == 403
    assert Client(REMOTE_ADDR="::1").get("/metrics").status_code == 403


@pytest.mark.django_db
def test_metrics_tokens_and_addresses_are_the_settings_that_open_it(settings: Any) -> None:
    settings.GONEXT_PLUGINS = {**getattr(settings, "GONEXT_PLUGINS", {}),
                               "METRICS_TOKENS": [SCRAPER_TOKEN],
                               "METRICS_ALLOWED_ADDRESSES": ["10.1.2.0/24"]}
    remote = Client(REMOTE_ADDR="203.0.113.9")
    assert remote.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {SCRAPER_TOKEN}").status_code == 200
    assert remote.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {SCRAPER_TOKEN}x").status_code == 403
    assert remote.get("/metrics").status_code == 403
    assert Client(REMOTE_ADDR="10.1.2.77").get("/metrics").status_code == 200
    assert Client(REMOTE_ADDR="127.0.0.1").get("/metrics").status_code == 403


def test_metrics_settings_are_checked(settings: Any) -> None:
    settings.GONEXT_PLUGINS = {**getattr(settings, "GONEXT_PLUGINS", {}),
                               "METRICS_TOKENS": ["short"],
                               "METRICS_ALLOWED_ADDRESSES": ["10.0.0.300", "0.0.0.0/0"]}
    ids = {message.id for message in checks.check_metrics_access()}
    assert ids == {"gonext_plugins.E007", "gonext_plugins.E008", "gonext_plugins.E009"}


# --- upgrades: another publisher key, and a capability asked for again, need consent ------------------


@pytest.fixture
def second_publisher(db: Any) -> Any:
    """Another trusted publisher key: trusted, but not the one the installed version was signed by."""
    private, public = signing.generate_key()
    key = lifecycle.trust_key("Second publisher", public, "tests")
    key.private_key = private
    return key


@pytest.mark.django_db
def test_an_upgrade_signed_by_another_publisher_key_needs_explicit_consent(
        admin: APIClient, installed: Plugin, publisher: Any, second_publisher: Any) -> None:
    def upgrade(**extra: Any) -> Any:
        raw = signed_bundle(second_publisher.private_key, version="2.0.0",
                            optionalCapabilities=["posts.read"])
        return admin.post("/api/plugins/demo/upgrade/", {"bundle": upload(raw), **extra}, format="multipart")

    data = assert_error(upgrade(), 409, "publisher_changed")
    assert (f"signed by a different publisher key: Second publisher ({second_publisher.fingerprint}), "
            f"was Test publisher ({publisher.fingerprint})") in data["detail"]
    installed.refresh_from_db()
    assert installed.active_version.version == "1.0.0"
    done = upgrade(accept_new_publisher="true")
    assert done.status_code == 200, done.content
    assert done.json()["publisher"]["fingerprint"] == second_publisher.fingerprint
    event = AuditEvent.objects.get(action="upgrade")
    assert event.details["publisher_changed"] is True


@pytest.mark.django_db
def test_the_admin_upgrade_dialog_shows_the_new_publisher_and_asks_for_consent(
        installed: Plugin, publisher: Any, second_publisher: Any) -> None:
    staff = Client()
    staff.force_login(make_user("boss", superuser=True))
    raw = signed_bundle(second_publisher.private_key, version="2.0.0", optionalCapabilities=["posts.read"])
    uploaded = staff.post(reverse("admin:gonext_plugins_plugin_upgrade", args=[installed.pk]),
                          {"bundle": SimpleUploadedFile("v2.gnplugin", raw)})
    assert uploaded.status_code == 302, uploaded.content[:2000]
    dialog = staff.get(uploaded["Location"])
    page = dialog.content.decode()
    assert "Signed by a different publisher key: Second publisher" in page
    assert f"was Test publisher ({publisher.fingerprint})" in page
    refused = staff.post(uploaded["Location"], {"_upgrade": "1", "capabilities": ["kv"]})
    assert refused.status_code == 200 and "I accept the new publisher" in refused.content.decode()
    installed.refresh_from_db()
    assert installed.active_version.version == "1.0.0"
    accepted = staff.post(uploaded["Location"], {"_upgrade": "1", "capabilities": ["kv"],
                                                 "accept_new_publisher": "on"})
    assert accepted.status_code == 302
    installed.refresh_from_db()
    assert installed.active_version.version == "2.0.0"


@pytest.mark.django_db
def test_a_capability_dropped_and_asked_again_needs_consent_again(make_bundle: Any) -> None:
    lifecycle.install(make_bundle(capabilities=["kv", "posts.read"]), ["kv", "posts.read"], "tests")
    lifecycle.upgrade("demo", make_bundle(version="2.0.0", capabilities=["kv"]), [], "tests")
    asks_again = make_bundle(version="3.0.0", capabilities=["kv", "posts.read"])
    with pytest.raises(ConsentRequired) as refused:
        lifecycle.upgrade("demo", asks_again, [], "tests")
    assert refused.value.missing == ["posts.read"]
    assert Plugin.objects.get(slug="demo").active_version.version == "2.0.0"
    lifecycle.upgrade("demo", asks_again, ["posts.read"], "tests")
    assert "posts.read" in lifecycle.granted_capabilities(Plugin.objects.get(slug="demo"))


@pytest.mark.django_db
def test_an_optional_capability_dropped_and_asked_again_is_not_silently_granted(make_bundle: Any) -> None:
    lifecycle.install(make_bundle(optionalCapabilities=["posts.read"]), ["kv", "posts.read"], "tests")
    lifecycle.upgrade("demo", make_bundle(version="2.0.0"), [], "tests")
    v3 = make_bundle(version="3.0.0", optionalCapabilities=["posts.read"])
    lifecycle.upgrade("demo", v3, [], "tests")
    plugin = Plugin.objects.get(slug="demo")
    assert "posts.read" not in lifecycle.effective(lifecycle.granted_capabilities(plugin), v3.manifest)
