"""The DRF API through DRF's test client: every endpoint, every refusal, every permission boundary
(anonymous, staff without permissions, staff with the one permission, superuser), token auth, and
the one error shape on every error. Real database, real storage, real wasmtime."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.core.cache import cache
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from gonext_plugins import lifecycle, signing
from gonext_plugins.models import (
    AuditEvent,
    CapabilityGrant,
    Plugin,
    PluginState,
    PluginVersion,
    PublisherKey,
)

from .api.helpers import CONTENT_HOOKS, MARKER, MARKER_V2, assert_error, marker_wasm, signed_bundle

pytestmark = pytest.mark.django_db

HIGH_RATES = {"gonext_plugins.read": "100000/min", "gonext_plugins.write": "100000/min"}


@pytest.fixture(autouse=True)
def _generous_throttles(settings: Any) -> None:
    """Throttling is tested on its own; elsewhere it must never make a test flaky."""
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": HIGH_RATES}
    cache.clear()


# --- users and clients ------------------------------------------------------------------------------


def make_user(name: str, *perms: str, staff: bool = True, superuser: bool = False,
              password: str | None = None) -> User:
    """A user with exactly ``perms`` (no password unless asked: hashing one costs ~0.2 s)."""
    user = User.objects.create_user(name, password=password, is_staff=staff or superuser,
                                    is_superuser=superuser)
    for perm in perms:
        user.user_permissions.add(
            Permission.objects.get(codename=perm, content_type__app_label="gonext_plugins"))
    return user


def client_for(user: User | None) -> APIClient:
    client = APIClient()
    if user is not None:
        client.force_authenticate(user)
    return client


@pytest.fixture
def admin() -> APIClient:
    return client_for(make_user("root", superuser=True))


@pytest.fixture
def bundle_of(publisher: Any) -> Callable[..., bytes]:
    def factory(**fields: Any) -> bytes:
        return signed_bundle(publisher.private_key, **fields)

    return factory


def upload(raw: bytes, name: str = "demo.gnplugin") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, raw, content_type="application/octet-stream")


def install(client: APIClient, raw: bytes, *grants: str, activate: bool = False, **extra: Any) -> Any:
    data: dict[str, Any] = {"bundle": upload(raw), "grant": list(grants), **extra}
    if activate:
        data["activate"] = "true"
    return client.post("/api/plugins/", data, format="multipart")


@pytest.fixture
def installed(publisher: Any, make_bundle: Any) -> Plugin:
    """A plugin ``demo`` 1.0.0 (asks for kv, optional posts.read), installed with kv, inactive."""
    return lifecycle.install(make_bundle(optionalCapabilities=["posts.read"]), ["kv"], "tests").plugin


# --- install ------------------------------------------------------------------------------------------


def test_install_returns_201_with_the_plugin(admin: APIClient, bundle_of: Any) -> None:
    response = install(admin, bundle_of(), "kv")
    assert response.status_code == 201, response.content
    data = response.json()
    assert data["slug"] == "demo" and data["version"] == "1.0.0" and data["changed"] is True
    assert data["state"] == "inactive" and data["signed"] is True
    assert data["publisher"]["name"] == "Test publisher"
    assert [g["capability"] for g in data["grants"]] == ["kv"]
    assert data["grants"][0]["granted_by"] == "root" and data["grants"][0]["risk"] == "low"
    assert data["capabilities"] == {"required": ["kv"], "optional": []}
    assert AuditEvent.objects.filter(action="install", actor_label="root").exists()


def test_install_and_activate_in_one_request(admin: APIClient, bundle_of: Any) -> None:
    response = install(admin, bundle_of(), "kv", activate=True)
    assert response.status_code == 201 and response.json()["state"] == "active"


def test_install_accepts_comma_separated_grants(admin: APIClient, bundle_of: Any) -> None:
    raw = bundle_of(capabilities=["kv"], optionalCapabilities=["posts.read"])
    response = install(admin, raw, "kv,posts.read")
    assert response.status_code == 201
    assert sorted(g["capability"] for g in response.json()["grants"]) == ["kv", "posts.read"]


def test_install_without_consent_is_409_listing_what_to_grant(admin: APIClient, bundle_of: Any) -> None:
    data = assert_error(install(admin, bundle_of(capabilities=["kv", "posts.read"]), "kv"), 409,
                        "consent_required")
    assert data["missing"] == ["posts.read"]
    assert data["problems"] == [{"capability": "posts.read", "risk": "low",
                                 "description": data["problems"][0]["description"]}]
    assert "posts.read" in data["detail"]
    assert not Plugin.objects.exists()


def test_install_of_an_existing_slug_is_409(admin: APIClient, bundle_of: Any, installed: Plugin) -> None:
    data = assert_error(install(admin, bundle_of(version="2.0.0"), "kv"), 409, "plugin_exists")
    assert "upgrade" in data["detail"]


@pytest.mark.parametrize(
    ("raw", "code"),
    [(b"not a zip at all", "bad_bundle"), (b"", "bad_bundle")],
)
def test_install_of_a_non_bundle_is_400(admin: APIClient, raw: bytes, code: str) -> None:
    assert_error(install(admin, raw, "kv"), 400, code)


def test_install_with_manifest_problems_lists_them_with_paths(admin: APIClient) -> None:
    import json

    from gonext_plugins import bundle

    from .conftest import guest_wasm, make_manifest

    manifest = json.dumps(make_manifest(version="one", slug="Bad Slug")).encode()
    raw = bundle._write_zip({bundle.MANIFEST: manifest, bundle.WASM: guest_wasm()})  # pack() would refuse
    data = assert_error(install(admin, raw), 400, "bad_manifest")
    paths = {p["path"] for p in data["problems"]}
    assert {"$.version", "$.slug"} <= paths, data


def test_install_of_an_unsigned_bundle_is_400(admin: APIClient) -> None:
    from gonext_plugins import bundle

    from .conftest import guest_wasm, make_manifest

    assert_error(install(admin, bundle.pack(make_manifest(), guest_wasm()), "kv"), 400, "unsigned")


def test_install_signed_by_an_untrusted_key_is_400(admin: APIClient, publisher: Any) -> None:
    stranger, _ = signing.generate_key()
    data = assert_error(install(admin, signed_bundle(stranger), "kv"), 400)
    assert data["error"] in {"untrusted_key", "bad_signature"}


def test_install_granting_unknown_or_unrequested_capabilities(admin: APIClient, bundle_of: Any) -> None:
    assert_error(install(admin, bundle_of(), "kv", "no.such.thing"), 400, "unknown_capability")
    assert_error(install(admin, bundle_of(), "kv", "posts.read"), 409, "lifecycle_error")


def test_install_request_validation(admin: APIClient) -> None:
    data = assert_error(admin.post("/api/plugins/", {}, format="multipart"), 400, "invalid_request")
    assert data["problems"][0]["path"] == "bundle"
    assert_error(admin.post("/api/plugins/", {"x": 1}, format="json"), 415, "unsupported_media_type")
    broken = admin.post("/api/plugins/", b"--x\r\nbroken", content_type="multipart/form-data; boundary=x")
    assert_error(broken, 400)


def test_oversized_request_is_413(admin: APIClient, settings: Any) -> None:
    settings.GONEXT_PLUGINS = {**settings.GONEXT_PLUGINS, "MAX_REQUEST_BYTES": 1000}
    assert_error(install(admin, b"x" * 5000, "kv"), 413)


def test_bundle_over_the_cap_is_refused_plainly(admin: APIClient, settings: Any, bundle_of: Any) -> None:
    raw = bundle_of()
    settings.GONEXT_PLUGINS = {**settings.GONEXT_PLUGINS, "MAX_BUNDLE_BYTES": 100}
    assert_error(install(admin, raw, "kv"), 400, "bundle_too_large")


# --- list and detail ----------------------------------------------------------------------------------


def test_list_is_paginated_and_filters_by_state(admin: APIClient, installed: Plugin,
                                                make_bundle: Any) -> None:
    lifecycle.install(make_bundle(slug="other"), ["kv"], "tests", activate=True)
    data = admin.get("/api/plugins/").json()
    assert data["count"] == 2 and [p["slug"] for p in data["results"]] == ["demo", "other"]
    assert [p["slug"] for p in admin.get("/api/plugins/?state=active").json()["results"]] == ["other"]
    assert admin.get("/api/plugins/?page_size=1&page=2").json()["results"][0]["slug"] == "other"
    assert_error(admin.get("/api/plugins/?state=sleeping"), 400, "invalid_request")
    assert_error(admin.get("/api/plugins/?page=99"), 404, "not_found")


def test_detail_and_unknown_plugin(admin: APIClient, installed: Plugin) -> None:
    data = admin.get("/api/plugins/demo/").json()
    assert data["slug"] == "demo" and data["versions"] == ["1.0.0"] and "changed" not in data
    assert data["capabilities"] == {"required": ["kv"], "optional": ["posts.read"]}
    for url in ("/api/plugins/nope/", "/api/plugins/nope/versions/", "/api/plugins/nope/grants/",
                "/api/plugins/nope/audit/", "/api/plugins/nope/logs/"):
        data = assert_error(admin.get(url), 404, "not_found")
    assert_error(admin.post("/api/plugins/nope/activate/"), 404, "not_found")
    assert_error(admin.delete("/api/plugins/nope/"), 404, "not_found")


# --- activate, deactivate ---------------------------------------------------------------------------


def test_activate_and_deactivate_with_no_ops(admin: APIClient, installed: Plugin) -> None:
    first = admin.post("/api/plugins/demo/activate/")
    assert first.status_code == 200 and first.json()["state"] == "active" and first.json()["changed"] is True
    again = admin.post("/api/plugins/demo/activate/")
    assert again.status_code == 200 and again.json()["changed"] is False
    off = admin.post("/api/plugins/demo/deactivate/")
    assert off.json()["state"] == "inactive" and off.json()["changed"] is True
    assert admin.post("/api/plugins/demo/deactivate/").json()["changed"] is False


def test_missing_trailing_slash_still_reaches_the_action(admin: APIClient, installed: Plugin) -> None:
    response = admin.post("/api/plugins/demo/activate")
    assert response.status_code == 200 and response.json()["state"] == "active"


def test_activate_that_cannot_load_is_409(admin: APIClient, publisher: Any) -> None:
    from gonext_plugins import bundle

    from .conftest import make_manifest

    raw = bundle.sign(bundle.pack(make_manifest(), b"\x00asm\x01\x00\x00\x00"), publisher.private_key)
    assert install(admin, raw, "kv").status_code == 201
    assert_error(admin.post("/api/plugins/demo/activate/"), 409, "load_error")


def test_activate_after_a_required_grant_was_revoked_is_409(admin: APIClient, installed: Plugin) -> None:
    lifecycle.revoke(installed, "kv", "tests")
    data = assert_error(admin.post("/api/plugins/demo/activate/"), 409, "consent_required")
    assert data["missing"] == ["kv"]


# --- upgrade and rollback -----------------------------------------------------------------------------


def upgrade(client: APIClient, raw: bytes, *grants: str, slug: str = "demo") -> Any:
    return client.post(f"/api/plugins/{slug}/upgrade/", {"bundle": upload(raw), "grant": list(grants)},
                       format="multipart")


def test_upgrade_consent_noop_conflict_and_older(admin: APIClient, installed: Plugin, bundle_of: Any) -> None:
    v2 = bundle_of(version="2.0.0", capabilities=["kv", "posts.read"])
    data = assert_error(upgrade(admin, v2), 409, "consent_required")
    assert data["missing"] == ["posts.read"]
    assert admin.get("/api/plugins/demo/").json()["version"] == "1.0.0"  # the old one keeps running
    done = upgrade(admin, v2, "posts.read")
    assert done.status_code == 200 and done.json()["version"] == "2.0.0" and done.json()["changed"] is True
    assert upgrade(admin, v2).json()["changed"] is False  # same bytes again
    other = bundle_of(version="2.0.0", capabilities=["kv", "posts.read"], description="changed")
    assert_error(upgrade(admin, other), 409, "version_conflict")
    assert_error(upgrade(admin, bundle_of(version="0.5.0")), 409, "lifecycle_error")
    assert_error(upgrade(admin, bundle_of(slug="other", version="3.0.0")), 409, "lifecycle_error")
    assert_error(upgrade(admin, b"junk"), 400, "bad_bundle")
    assert_error(admin.post("/api/plugins/demo/upgrade/", {}, format="multipart"), 400, "invalid_request")


def test_rollback_default_named_noop_and_refusals(admin: APIClient, installed: Plugin,
                                                  make_bundle: Any) -> None:
    assert_error(admin.post("/api/plugins/demo/rollback/"), 409, "no_older_version")
    lifecycle.upgrade(installed, make_bundle(version="2.0.0"), [], "tests")
    lifecycle.upgrade(installed, make_bundle(version="3.0.0"), [], "tests")
    back = admin.post("/api/plugins/demo/rollback/")
    assert back.status_code == 200 and back.json()["version"] == "2.0.0" and back.json()["changed"]
    named = admin.post("/api/plugins/demo/rollback/", {"version": "1.0.0"}, format="json")
    assert named.json()["version"] == "1.0.0"
    same = admin.post("/api/plugins/demo/rollback/", {"version": "1.0.0"}, format="json")
    assert same.json()["changed"] is False
    data = assert_error(admin.post("/api/plugins/demo/rollback/", {"version": "9.9.9"}, format="json"), 409)
    assert "9.9.9" in data["detail"]
    assert_error(admin.post("/api/plugins/demo/rollback/", {"version": ["x"]}, format="json"), 400,
                 "invalid_request")
    assert_error(admin.post("/api/plugins/demo/rollback/", "{not json", content_type="application/json"),
                 400, "parse_error")


def test_versions_lists_every_version_oldest_first(admin: APIClient, installed: Plugin,
                                                   make_bundle: Any) -> None:
    lifecycle.upgrade(installed, make_bundle(version="1.10.0"), [], "tests")
    data = admin.get("/api/plugins/demo/versions/").json()
    assert [v["version"] for v in data] == ["1.0.0", "1.10.0"]
    assert [v["active"] for v in data] == [False, True]
    assert data[0]["signed"] and len(data[0]["wasm_sha256"]) == 64


# --- grants ---------------------------------------------------------------------------------------------


def test_grants_list_grant_revoke(admin: APIClient, installed: Plugin) -> None:
    assert [g["capability"] for g in admin.get("/api/plugins/demo/grants/").json()] == ["kv"]
    granted = admin.post("/api/plugins/demo/grants/", {"grant": ["posts.read"]}, format="json")
    assert granted.status_code == 200 and granted.json()["changed"] is True
    assert sorted(g["capability"] for g in granted.json()["grants"]) == ["kv", "posts.read"]
    again = admin.post("/api/plugins/demo/grants/", {"grant": ["posts.read"]}, format="json")
    assert again.json()["changed"] is False
    revoked = admin.delete("/api/plugins/demo/grants/?capability=posts.read")
    assert revoked.status_code == 200 and revoked.json()["changed"] is True
    assert admin.delete("/api/plugins/demo/grants/?capability=posts.read").json()["changed"] is False


def test_revoking_a_required_grant_deactivates(admin: APIClient, installed: Plugin) -> None:
    lifecycle.activate(installed, "tests")
    data = admin.delete("/api/plugins/demo/grants/?capability=kv").json()
    assert data["state"] == "inactive" and data["grants"] == []


def test_grant_refusals(admin: APIClient, installed: Plugin) -> None:
    assert_error(admin.post("/api/plugins/demo/grants/", {"grant": ["nope.nope"]}, format="json"), 400,
                 "unknown_capability")
    assert_error(admin.post("/api/plugins/demo/grants/", {"grant": ["http.fetch"]}, format="json"), 409,
                 "lifecycle_error")
    assert_error(admin.post("/api/plugins/demo/grants/", {"grant": []}, format="json"), 400,
                 "invalid_request")
    assert_error(admin.post("/api/plugins/demo/grants/", {}, format="json"), 400, "invalid_request")
    assert_error(admin.delete("/api/plugins/demo/grants/"), 400, "invalid_request")


# --- uninstall, audit, capabilities ------------------------------------------------------------------


def test_uninstall_and_keep_data(admin: APIClient, installed: Plugin) -> None:
    from gonext_plugins.models import PluginKV

    PluginKV.objects.create(plugin_slug="demo", key="k", value=1, size=1)
    response = admin.delete("/api/plugins/demo/?keep_data=true")
    assert response.status_code == 200
    assert response.json() == {"slug": "demo", "changed": True, "keep_data": True}
    assert not Plugin.objects.exists() and PluginKV.objects.filter(plugin_slug="demo").exists()
    assert_error(admin.delete("/api/plugins/demo/"), 404, "not_found")
    assert_error(admin.delete("/api/plugins/demo/?keep_data=maybe"), 400, "invalid_request")


def test_uninstall_deletes_data_by_default(admin: APIClient, installed: Plugin) -> None:
    from gonext_plugins.models import PluginKV

    PluginKV.objects.create(plugin_slug="demo", key="k", value=1, size=1)
    assert admin.delete("/api/plugins/demo/").json()["keep_data"] is False
    assert not PluginKV.objects.exists() and not PluginVersion.objects.exists()
    assert not CapabilityGrant.objects.exists()


def test_audit_newest_first_and_paginated(admin: APIClient, installed: Plugin) -> None:
    admin.post("/api/plugins/demo/activate/")
    data = admin.get("/api/plugins/demo/audit/").json()
    assert [e["action"] for e in data["results"]][:2] == ["activate", "install"]
    assert data["results"][0]["actor"] == "root" and data["results"][0]["plugin"] == "demo"
    assert data["results"][0]["details"]["after"] == "active"


def test_capabilities_lists_each_with_risk(admin: APIClient) -> None:
    data = {c["name"]: c for c in admin.get("/api/capabilities/").json()}
    assert data["http.fetch"]["risk"] == "high" and data["http.fetch"]["functions"] == ["http.fetch"]
    assert data["posts.read"]["builtin"] is False


# --- logs ----------------------------------------------------------------------------------------------


def test_logs_backlog_since_and_level(admin: APIClient, installed: Plugin) -> None:
    from datetime import UTC, datetime, timedelta

    from gonext_plugins.models import PluginLogEntry

    now = datetime.now(UTC)
    rows = [PluginLogEntry.objects.create(time=now + timedelta(seconds=i), plugin="demo", version="1.0.0",
                                          level=i % 4, message=f"line {i}") for i in range(8)]
    PluginLogEntry.objects.create(time=now, plugin="other", message="not mine")
    data = admin.get("/api/plugins/demo/logs/").json()
    assert [line["message"] for line in data["lines"]] == [f"line {i}" for i in range(8)]
    assert data["next_since"] == rows[-1].pk
    after = admin.get(f"/api/plugins/demo/logs/?since={rows[5].pk}").json()
    assert [line["message"] for line in after["lines"]] == ["line 6", "line 7"]
    assert admin.get(f"/api/plugins/demo/logs/?since={rows[-1].pk}").json() == {
        "lines": [], "next_since": rows[-1].pk}
    errors_only = admin.get("/api/plugins/demo/logs/?level=error").json()
    assert [line["message"] for line in errors_only["lines"]] == ["line 3", "line 7"]
    warnings = admin.get("/api/plugins/demo/logs/?level=2").json()["lines"]
    assert [line["level"] for line in warnings] == [2, 3, 2, 3]
    stamp = (now + timedelta(seconds=6)).isoformat().replace("+00:00", "Z")
    by_time = admin.get("/api/plugins/demo/logs/", {"since": stamp}).json()
    assert [line["message"] for line in by_time["lines"]] == ["line 6", "line 7"]
    assert [line["message"] for line in admin.get("/api/plugins/demo/logs/?limit=2").json()["lines"]] == [
        "line 6", "line 7"]
    assert_error(admin.get("/api/plugins/demo/logs/?level=loud"), 400, "invalid_request")
    assert_error(admin.get("/api/plugins/demo/logs/?since=yesterday"), 400, "invalid_request")
    assert_error(admin.get("/api/plugins/demo/logs/?limit=0"), 400, "invalid_request")
    assert_error(admin.get(f"/api/plugins/demo/logs/?since={2**64}"), 400, "invalid_request")
    assert_error(admin.get("/api/plugins/?page=99999999999999999999999"), 404, "not_found")


# --- keys ----------------------------------------------------------------------------------------------


def test_keys_list_trust_and_revoke(admin: APIClient, installed: Plugin, publisher: Any) -> None:
    listed = admin.get("/api/keys/").json()
    assert [k["fingerprint"] for k in listed] == [publisher.fingerprint] and listed[0]["usable"]
    _, public = signing.generate_key()
    created = admin.post("/api/keys/", {"name": "Second", "public_key": public}, format="json")
    assert created.status_code == 201 and created.json()["changed"] is True
    again = admin.post("/api/keys/", {"name": "Second", "public_key": public}, format="json")
    assert again.status_code == 200 and again.json()["changed"] is False
    lifecycle.activate(installed, "tests")
    revoked = admin.delete(f"/api/keys/?fingerprint={publisher.fingerprint[:12]}")
    assert revoked.status_code == 200
    assert revoked.json() == {"fingerprint": publisher.fingerprint, "changed": True, "deactivated": ["demo"]}
    assert admin.delete(f"/api/keys/?fingerprint={publisher.fingerprint}").json()["changed"] is False
    assert PublisherKey.objects.get(pk=publisher.pk).revoked_at is not None
    assert Plugin.objects.get(slug="demo").state == PluginState.INACTIVE


def test_key_refusals(admin: APIClient, publisher: Any) -> None:
    assert_error(admin.post("/api/keys/", {"name": "x", "public_key": "not-a-key"}, format="json"), 400,
                 "bad_signature")
    assert_error(admin.post("/api/keys/", {"name": "x"}, format="json"), 400, "invalid_request")
    assert_error(admin.delete("/api/keys/?fingerprint=abc"), 400, "invalid_request")
    assert_error(admin.delete("/api/keys/?fingerprint=zzzzzzzzzz"), 400, "invalid_request")
    assert_error(admin.delete("/api/keys/"), 400, "invalid_request")
    assert_error(admin.delete("/api/keys/?fingerprint=00000000"), 404, "key_not_found")
    lifecycle.revoke_key(publisher, "tests")
    again = admin.post("/api/keys/", {"name": "again", "public_key": publisher.public_key}, format="json")
    assert_error(again, 409, "lifecycle_error")


# --- permissions ----------------------------------------------------------------------------------------

# (method, url, permission codename needed, data) for every endpoint (tests/security/
# test_permission_matrix.py holds the whole policy; this checks each endpoint's boundary).
ENDPOINTS: list[tuple[str, str, str | None, dict[str, Any] | None]] = [
    ("get", "/api/plugins/", "view_plugin", None),
    ("post", "/api/plugins/", "install_plugin", {}),
    ("get", "/api/plugins/demo/", "view_plugin", None),
    ("delete", "/api/plugins/demo/", "install_plugin", None),
    ("post", "/api/plugins/demo/activate/", "activate_plugin", None),
    ("post", "/api/plugins/demo/deactivate/", "activate_plugin", None),
    ("post", "/api/plugins/demo/upgrade/", "install_plugin", {}),
    ("post", "/api/plugins/demo/rollback/", "install_plugin", {"version": "1.0.0"}),
    ("get", "/api/plugins/demo/versions/", "view_plugin", None),
    ("get", "/api/plugins/demo/grants/", "view_plugin", None),
    ("post", "/api/plugins/demo/grants/", "grant_capability", {"grant": ["posts.read"]}),
    ("delete", "/api/plugins/demo/grants/?capability=posts.read", "grant_capability", None),
    ("get", "/api/plugins/demo/audit/", "view_auditevent", None),
    ("get", "/api/plugins/demo/logs/", "view_plugin_logs", None),
    ("get", "/api/capabilities/", "view_plugin", None),
    ("get", "/api/keys/", "view_publisherkey", None),
    ("post", "/api/keys/", "add_publisherkey", {"name": "k", "public_key": "x"}),
    ("delete", "/api/keys/?fingerprint=00000000", "change_publisherkey", None),
]
OTHER_PERMS = ["view_plugin", "install_plugin", "activate_plugin", "grant_capability", "view_plugin_logs",
               "view_auditevent", "view_publisherkey", "add_publisherkey", "change_publisherkey"]


def call(client: APIClient, method: str, url: str, data: dict[str, Any] | None) -> Any:
    if data is None:
        return getattr(client, method)(url)
    return getattr(client, method)(url, data, format="multipart" if "upgrade" in url or url.endswith(
        "/plugins/") else "json")


@pytest.mark.parametrize(("method", "url", "perm", "data"), ENDPOINTS,
                         ids=[f"{m} {u}" for m, u, *_ in ENDPOINTS])
def test_permission_boundaries(method: str, url: str, perm: str | None, data: dict[str, Any] | None,
                               installed: Plugin) -> None:
    anonymous = call(client_for(None), method, url, data)
    assert_error(anonymous, 401, "not_authenticated")
    assert anonymous["WWW-Authenticate"] == "Token"

    nobody = make_user("staff")
    assert_error(call(client_for(nobody), method, url, data), 403, "permission_denied")

    # Every *other* permission is not enough.
    others = make_user("others", *[p for p in OTHER_PERMS if p != perm])
    assert_error(call(client_for(others), method, url, data), 403, "permission_denied")

    if perm is not None:
        allowed = call(client_for(make_user("allowed", perm)), method, url, data)
        assert allowed.status_code not in (401, 403), allowed.content
        assert allowed.status_code < 500
    superuser = call(client_for(make_user("super", superuser=True)), method, url, data)
    assert superuser.status_code not in (401, 403) and superuser.status_code < 500, superuser.content


def test_a_non_staff_user_with_the_permission_may_automate(installed: Plugin) -> None:
    """Permissions decide, not the staff flag: a bot account needs no admin access."""
    bot = make_user("bot", "view_plugin", staff=False)
    assert client_for(bot).get("/api/plugins/demo/").status_code == 200


def test_inactive_user_is_refused(installed: Plugin) -> None:
    user = make_user("gone", "view_plugin")
    user.is_active = False
    user.save()
    token = Token.objects.create(user=user)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    assert_error(client.get("/api/plugins/"), 401, "authentication_failed")


# --- authentication --------------------------------------------------------------------------------------


def test_token_authentication(installed: Plugin) -> None:
    token = Token.objects.create(user=make_user("tok", "activate_plugin"))
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    response = client.post("/api/plugins/demo/activate/")
    assert response.status_code == 200
    assert AuditEvent.objects.filter(action="activate", actor_label="tok").exists()
    client.credentials(HTTP_AUTHORIZATION="Token wrong")
    assert_error(client.get("/api/plugins/"), 401, "authentication_failed")
    client.credentials(HTTP_AUTHORIZATION="Token")
    assert_error(client.get("/api/plugins/"), 401, "authentication_failed")


def test_session_authentication_enforces_csrf(installed: Plugin) -> None:
    make_user("sess", "activate_plugin", "view_plugin", password="pw")
    client = APIClient(enforce_csrf_checks=True)
    assert client.login(username="sess", password="pw")
    assert client.get("/api/plugins/demo/").status_code == 200
    data = assert_error(client.post("/api/plugins/demo/activate/"), 403, "permission_denied")
    assert "CSRF" in data["detail"]
    token = "a" * 32  # a CSRF secret as Django's cookie holds it
    client.cookies["csrftoken"] = token
    assert client.post("/api/plugins/demo/activate/", HTTP_X_CSRFTOKEN=token).status_code == 200


# --- the one error shape --------------------------------------------------------------------------------


def test_unknown_paths_and_methods_use_the_error_shape(admin: APIClient, installed: Plugin) -> None:
    assert_error(admin.get("/api/plugins/demo/nothing/here/"), 404, "not_found")
    assert_error(admin.get("/api/keys/nothing"), 404, "not_found")
    assert_error(client_for(None).get("/api/plugins/demo/nothing"), 404, "not_found")
    # paths that are none of the API's resources stay the site's (issue 15: api/mine/ was swallowed)
    assert admin.get("/api/nothing/here/")["Content-Type"].startswith("text/html")
    assert_error(admin.put("/api/plugins/demo/", {}, format="json"), 405, "method_not_allowed")
    assert_error(admin.get("/api/plugins/demo/activate/"), 405, "method_not_allowed")
    assert_error(admin.patch("/api/keys/", {}, format="json"), 405, "method_not_allowed")
    assert_error(admin.get("/api/plugins/", HTTP_ACCEPT="text/xml"), 406, "not_acceptable")


def test_throttling_is_scoped_and_in_the_error_shape(admin: APIClient, settings: Any,
                                                     installed: Plugin) -> None:
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {
        "gonext_plugins.read": "3/min", "gonext_plugins.write": "1/min"}}
    cache.clear()
    for _ in range(3):
        assert admin.get("/api/plugins/").status_code == 200
    data = assert_error(admin.get("/api/plugins/"), 429, "throttled")
    assert data["retry_after"] >= 1
    # writes have their own budget
    assert admin.post("/api/plugins/demo/activate/").status_code == 200
    response = admin.post("/api/plugins/demo/deactivate/")
    assert_error(response, 429, "throttled")
    assert int(response["Retry-After"]) >= 1
    # and each user has their own
    assert client_for(make_user("fresh", superuser=True)).get("/api/plugins/").status_code == 200


def test_an_unexpected_error_is_a_500_without_traceback(admin: APIClient, installed: Plugin,
                                                        monkeypatch: pytest.MonkeyPatch,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    def explode(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("secret internals /etc/passwd")

    monkeypatch.setattr(lifecycle, "activate", explode)
    data = assert_error(admin.post("/api/plugins/demo/activate/"), 500, "server_error")
    assert "secret" not in data["detail"]
    assert "secret internals" in caplog.text  # logged for the operator


# --- schema and docs -------------------------------------------------------------------------------------


def test_schema_and_docs_pages(client: Any) -> None:
    schema = client.get("/api/schema/?format=json").json()
    assert schema["openapi"].startswith("3.")
    paths = schema["paths"]
    assert "/api/plugins/{slug}/upgrade/" in paths and "/api/schema/" not in paths
    install_op = paths["/api/plugins/"]["post"]
    assert "multipart/form-data" in install_op["requestBody"]["content"]
    for code in ("400", "401", "403", "409", "413"):
        assert install_op["responses"][code]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/Error"}
    names = {p["name"] for p in paths["/api/plugins/{slug}/logs/"]["get"]["parameters"]}
    assert {"since", "level", "slug"} <= names
    assert {"tokenAuth", "cookieAuth"} <= set(schema["components"]["securitySchemes"])
    docs = client.get("/api/docs/")
    assert docs.status_code == 200 and b"/static/drf_spectacular_sidecar/swagger-ui-dist/" in docs.content
    redoc = client.get("/api/redoc/")
    assert redoc.status_code == 200 and b"drf_spectacular_sidecar/redoc" in redoc.content
    from django.contrib.staticfiles import finders

    assert finders.find("drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js")


# --- the blog page through the API (in process; tests/test_api_live.py does it over a real server) --


@pytest.mark.django_db(transaction=True)
def test_blog_page_follows_api_operations(admin: APIClient, publisher: Any, client: Any) -> None:
    from project.blog.models import Post

    Post.objects.create(title="Hello", slug="hello", body="Body text")
    caps = {"capabilities": ["hooks.subscribe"], "hooks": CONTENT_HOOKS, "slug": "marker"}
    raw1 = signed_bundle(publisher.private_key, marker_wasm(), **caps)
    raw2 = signed_bundle(publisher.private_key, marker_wasm(MARKER_V2), version="2.0.0", **caps)
    assert install(admin, raw1, "hooks.subscribe", activate=True).status_code == 201
    assert MARKER in client.get("/posts/hello/").content.decode()
    assert upgrade(admin, raw2, slug="marker").status_code == 200
    page = client.get("/posts/hello/").content.decode()
    assert MARKER_V2 in page and MARKER not in page
    assert admin.post("/api/plugins/marker/deactivate/").status_code == 200
    page = client.get("/posts/hello/").content.decode()
    assert MARKER not in page and MARKER_V2 not in page


def test_unknown_query_parameters_are_refused(admin: APIClient, installed: Plugin) -> None:
    """A typo must not silently change what a call does (here: delete the plugin's data)."""
    data = assert_error(admin.delete("/api/plugins/demo/?keepdata=true"), 400, "invalid_request")
    assert data["problems"][0]["path"] == "keepdata" and "keep_data" in data["problems"][0]["message"]
    assert Plugin.objects.filter(slug="demo").exists()
    assert_error(admin.post("/api/plugins/demo/activate/?force=1"), 400, "invalid_request")
    assert_error(admin.get("/api/plugins/?page=0"), 400, "invalid_request")
    assert_error(admin.get("/api/plugins/?page_size=500"), 400, "invalid_request")
    assert_error(admin.get("/api/plugins/?state="), 400, "invalid_request")
    assert admin.get("/api/plugins/?state=inactive&page=1&page_size=10").status_code == 200


def test_form_data_over_djangos_limit_is_413(admin: APIClient, installed: Plugin, settings: Any) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 100
    response = admin.post("/api/plugins/demo/rollback/", {"version": "9" * 500})  # multipart by default
    assert_error(response, 413, "request_too_large")
    response = admin.post("/api/plugins/demo/rollback/", "version=" + "9" * 500,
                          content_type="application/x-www-form-urlencoded")
    assert_error(response, 413, "request_too_large")
