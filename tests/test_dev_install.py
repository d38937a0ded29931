"""The dev install endpoint (``POST /_/plugins/dev/install``) and ``lifecycle.dev_install`` behind
it: dev mode only, token or staff-session auth, every build its own immutable version with earlier
builds removed, signed plugins left alone; trap reports in the faults API and the log; token auth on
the log WebSocket. Real database, real wasmtime, the site's real URL configuration."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.layers import channel_layers
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import Permission, User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from rest_framework.authtoken.models import Token

from gonext_plugins import lifecycle, logs
from gonext_plugins.devtools import upload
from gonext_plugins.errors import PluginTrap
from gonext_plugins.models import AuditEvent, Plugin, PluginFault, PluginLogEntry, PluginVersion
from gonext_plugins.registry import registry
from gonext_plugins.storage import blob_name, get_storage

from .api.helpers import assert_error
from .conftest import guest_wasm, make_manifest

URL = "/_/plugins/dev/install"
HOOKS = [{"name": "the_content", "kind": "filter"}]


@pytest.fixture(autouse=True)
def dev_mode(settings: Any) -> None:
    """Dev mode on, and an empty throttle cache: earlier tests' requests (same user ids, the same
    process cache) must not throttle these."""
    from django.core.cache import cache

    settings.GONEXT_PLUGINS = {**settings.GONEXT_PLUGINS, "DEV_MODE": True}
    cache.clear()


def manifest_bytes(**fields: Any) -> bytes:
    base = {"slug": "devdemo", "name": "Dev demo", "version": "0.1.0", "capabilities": ["hooks.subscribe"],
            "hooks": HOOKS}
    return json.dumps(make_manifest(**{**base, **fields})).encode()


def installer(username: str = "dev", *, staff: bool = True, perm: bool = True) -> User:
    user = User.objects.create_user(username, password="pw", is_staff=staff)
    if perm:  # a dev install installs, grants what the manifest asks for and activates
        user.user_permissions.add(*Permission.objects.filter(
            codename__in=["install_plugin", "grant_capability", "activate_plugin"]))
    return user


def post(client: Client, manifest: bytes, wasm: bytes, **extra: Any) -> Any:
    files = {"manifest": SimpleUploadedFile("manifest.json", manifest, "application/json"),
             "wasm": SimpleUploadedFile("plugin.wasm", wasm, "application/wasm")}
    return client.post(URL, files, **extra)


def token_client(user: User) -> Client:
    return Client(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")


@pytest.mark.django_db
def test_install_replace_unchanged_and_cleanup(django_capture_on_commit_callbacks: Any) -> None:
    client = token_client(installer())
    wasm1, wasm2 = guest_wasm("marker_guest"), guest_wasm("abi_guest")

    first = post(client, manifest_bytes(), wasm1)
    assert first.status_code == 201, first.content
    data = first.json()
    assert data["status"] == "installed" and data["plugin"] == "devdemo" and data["state"] == "active"
    assert data["version"].startswith("0.1.0+dev.") and len(data["version"]) == len("0.1.0+dev.") + 12
    assert data["capabilities"] == {"granted": ["hooks.subscribe"], "added": ["hooks.subscribe"],
                                    "removed": []}
    audit = AuditEvent.objects.filter(plugin_slug="devdemo", action="dev_install").get()
    assert audit.details["signature"] == "unsigned-dev" and audit.actor_label == "dev"
    assert AuditEvent.objects.filter(plugin_slug="devdemo", action="dev_grant").exists()
    registry.sync(force=True)
    assert registry.get("devdemo").version == data["version"]  # type: ignore[union-attr]

    again = post(client, manifest_bytes(), wasm1)
    assert again.status_code == 200 and again.json()["status"] == "unchanged"
    assert again.json()["version"] == data["version"]

    # another build: a new version; the old one and its blob are gone
    with django_capture_on_commit_callbacks(execute=True):
        replaced = post(client, manifest_bytes(), wasm2).json()
    assert replaced["status"] == "replaced" and replaced["version"] != data["version"]
    assert replaced["removed_versions"] == [data["version"]]
    assert list(PluginVersion.objects.values_list("version", flat=True)) == [replaced["version"]]
    assert not get_storage().exists(blob_name(hashlib.sha256(wasm1).hexdigest()))
    assert get_storage().exists(blob_name(hashlib.sha256(wasm2).hexdigest()))

    # a manifest-only change is a build too: the optional capability is granted (and audited)
    widened = post(client, manifest_bytes(optionalCapabilities=["kv"]), wasm2).json()
    assert widened["status"] == "replaced" and widened["capabilities"]["added"] == ["kv"]
    narrowed = post(client, manifest_bytes(), wasm2).json()
    assert narrowed["capabilities"]["removed"] == ["kv"]
    assert set(Plugin.objects.get().grants.values_list("capability", flat=True)) == {"hooks.subscribe"}


@pytest.mark.django_db
def test_a_quarantined_or_deactivated_dev_plugin_runs_again_on_upload() -> None:
    client = token_client(installer())
    post(client, manifest_bytes(), guest_wasm("marker_guest"))
    lifecycle.quarantine("devdemo", "tests")
    answer = post(client, manifest_bytes(), guest_wasm("marker_guest")).json()
    assert answer["status"] == "unchanged" and answer["state"] == "active"
    assert "re-activated" in answer["detail"]


@pytest.mark.django_db
def test_signed_plugins_are_not_replaced(make_bundle: Any) -> None:
    lifecycle.install(make_bundle(slug="devdemo", capabilities=["hooks.subscribe"], hooks=HOOKS),
                      ["hooks.subscribe"], "tests")
    data = assert_error(post(token_client(installer()), manifest_bytes(), guest_wasm("marker_guest")), 409,
                        "dev_install_refused")
    assert "1.0.0" in data["detail"] and data["plugin"] == "devdemo"
    assert PluginVersion.objects.count() == 1


@pytest.mark.django_db
def test_refusals_in_the_api_error_shape(settings: Any) -> None:
    wasm = guest_wasm("marker_guest")
    assert_error(post(Client(), manifest_bytes(), wasm), 401, "not_authenticated")
    assert_error(post(token_client(installer("noperm", perm=False)), manifest_bytes(), wasm), 403)
    bad = assert_error(post(token_client(installer()), manifest_bytes(version="one"), wasm), 400)
    assert any(p.get("path") == "version" or "version" in json.dumps(p) for p in bad["problems"]) or \
        "version" in bad["detail"]
    assert_error(post(token_client(installer("x2")), manifest_bytes(capabilities=["nope"]), wasm), 400)
    missing = token_client(installer("x3")).post(URL, {"manifest": SimpleUploadedFile("m.json", b"{}")})
    assert_error(missing, 400, "invalid_request")
    # a staff session works, but only with its CSRF token (DRF's session authentication)
    session = Client(enforce_csrf_checks=True)
    session.force_login(installer("staffer"))
    assert_error(post(session, manifest_bytes(), wasm), 403)
    non_staff = Client()
    non_staff.force_login(installer("nonstaff", staff=False))
    assert_error(post(non_staff, manifest_bytes(), wasm), 403)
    helper = Client()
    helper.force_login(User.objects.get(username="staffer"))
    assert post(helper, manifest_bytes(), wasm).status_code == 201
    # outside dev mode the endpoint does not exist, whoever asks
    settings.GONEXT_PLUGINS = {**settings.GONEXT_PLUGINS, "DEV_MODE": False}
    assert_error(post(token_client(installer("late")), manifest_bytes(), wasm), 404, "not_found")
    assert_error(post(Client(), manifest_bytes(), wasm), 404)


@pytest.mark.django_db
def test_the_upload_client_speaks_to_the_endpoint(live_server: Any) -> None:
    """``devtools.upload`` (what ``plugin dev`` uses) against the real view over HTTP."""
    user = installer()
    token = Token.objects.create(user=user).key
    answer = upload.install(live_server.url, manifest_bytes(), guest_wasm("marker_guest"), token=token)
    assert answer["status"] == "installed" and answer["state"] == "active"
    with pytest.raises(upload.UploadError) as refused:
        upload.install(live_server.url, manifest_bytes(slug="Bad Slug"), guest_wasm("marker_guest"),
                       token=token)
    assert refused.value.status == 400 and refused.value.error == "bad_manifest"
    assert "$.slug" in str(refused.value)


# --- trap reports ---------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_trap_without_a_source_map_is_reported_in_faults_log_and_api() -> None:
    user = installer()
    user.user_permissions.add(Permission.objects.get(codename="view_plugin"))
    client = token_client(user)
    post(client, manifest_bytes(hooks=[{"name": "panic", "kind": "action"}]), guest_wasm("abi_guest"))
    registry.sync(force=True)
    loaded = registry.get("devdemo")
    assert loaded is not None
    with pytest.raises(PluginTrap):
        loaded.invoke("action", "panic")
    fault = PluginFault.objects.get()
    assert fault.report is not None and fault.report["frames"]
    top = fault.report["frames"][0]
    assert top["function"].startswith("func[") and top["symbol"].startswith(top["function"] + "+0x")
    assert top["location"] == f"{top['symbol']} (no source map)"  # no name section: index + offset
    logs.flush()
    line = PluginLogEntry.objects.filter(plugin="devdemo", level=3).last()
    assert line is not None and "#0 func[" in line.message and "(no source map)" in line.message
    faults = client.get("/api/plugins/devdemo/faults/")
    assert faults.status_code == 200
    first = faults.json()["results"][0]
    assert first["kind"] == "trap" and first["report"]["frames"][0]["location"] == top["location"]
    assert "(no source map)" in first["report"]["text"]
    # the admin's plugin page: the report under the fault's message
    admin = Client()
    admin.force_login(User.objects.create_superuser("root", "root@example.com", "pw"))
    page = admin.get(f"/admin/gonext_plugins/plugin/{Plugin.objects.get().pk}/change/").content.decode()
    assert "Trap report" in page and "(no source map)" in page and "#0  func[" in page


# --- the log WebSocket with an API token ----------------------------------------------------------


def _ws(path: str, headers: list[tuple[bytes, bytes]]) -> tuple[bool, Any]:
    from project.asgi import application

    async def scenario() -> tuple[bool, Any]:
        comm = WebsocketCommunicator(application, path, headers=[(b"origin", b"http://testserver"),
                                                                  (b"host", b"testserver"), *headers])
        connected, _ = await comm.connect()
        message = await comm.receive_output(timeout=5)
        await comm.disconnect()
        return connected, message

    channel_layers.backends.clear()
    try:
        return async_to_sync(scenario)()
    finally:
        channel_layers.backends.clear()
        logs.writer.consumer_loop = None


@pytest.mark.django_db(transaction=True)
def test_log_socket_accepts_an_api_token(settings: Any) -> None:
    post(token_client(installer()), manifest_bytes(), guest_wasm("marker_guest"))
    watcher = User.objects.create_user("watcher", is_staff=True)
    watcher.user_permissions.add(Permission.objects.get(codename="view_plugin_logs"))
    key = Token.objects.create(user=watcher).key
    path = "/_/plugins/dev/logs/devdemo/"

    _, message = _ws(path, [(b"authorization", f"Token {key}".encode())])
    assert message["type"] == "websocket.send" and json.loads(message["text"])["type"] == "backlog"
    _, message = _ws(f"{path}?token={key}", [])
    assert json.loads(message["text"])["type"] == "backlog"
    _, message = _ws(path, [(b"authorization", b"Token wrong")])
    assert message == {"type": "websocket.close", "code": 4403}
    # the query-string form is for dev sites only (URLs end up in access logs)
    settings.GONEXT_PLUGINS = {**settings.GONEXT_PLUGINS, "DEV_MODE": False}
    _, message = _ws(f"{path}?token={key}", [])
    assert message == {"type": "websocket.close", "code": 4403}
    # a token of a user without the permission is refused like a session would be
    nobody = Token.objects.create(user=User.objects.create_user("nobody", is_staff=True)).key
    _, message = _ws(path, [(b"authorization", f"Token {nobody}".encode())])
    assert message == {"type": "websocket.close", "code": 4403}
