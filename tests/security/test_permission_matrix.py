"""Every interface, every action, every role, from ONE table of what each action needs.

Issue #13, class 6: a permission must do what its name says, in every interface alike. The table
``ACTIONS`` names, for each action of each interface (the admin, the API, the log WebSocket, the
plain views), the codenames it needs — all of them. A role is allowed exactly when it holds all of
them (a superuser holds every permission); otherwise it is refused the way its interface refuses
(the admin's login redirect or 403, the API's 401/403 in its error shape, WebSocket close 4403)
and nothing is written (the audit trail does not grow). Allowed writes must really happen (the
audit trail grows); allowed reads answer 2xx.

Real users, real database, real wasmtime: the Django test client for the admin and the views,
token-authenticated requests for the API, Channels' ``WebsocketCommunicator`` for the consumer.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.layers import channel_layers
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import AnonymousUser, Permission, User
from django.core.cache import cache
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from gonext_plugins import bundle, lifecycle, signing
from gonext_plugins.admin_views import hold_upload
from gonext_plugins.models import AuditEvent, Plugin, PluginState

from ..api.helpers import assert_error, signed_bundle
from ..conftest import guest_wasm, make_manifest

pytestmark = pytest.mark.django_db

# --- the one expected table -------------------------------------------------------------------------

VIEW = "view_plugin"
INSTALL = "install_plugin"
ACTIVATE = "activate_plugin"
GRANT = "grant_capability"
LOGS = "view_plugin_logs"
AUDIT = "view_auditevent"
KEYS = "view_publisherkey"
TRUST = "add_publisherkey"
REVOKE_KEY = "change_publisherkey"
SETTINGS = "change_plugin_settings"
SINGLE_PERMISSIONS = [VIEW, INSTALL, ACTIVATE, GRANT, LOGS, AUDIT, KEYS, TRUST, REVOKE_KEY, SETTINGS]

ROLES = ["anonymous", "plain_user", "staff_no_perm", *(f"only:{p}" for p in SINGLE_PERMISSIONS),
         "superuser"]


@dataclass(frozen=True)
class Action:
    name: str
    kind: str  # how a refusal looks: "admin" (login redirect / 403), "api" (401 / 403), "ws", "metrics"
    needs: tuple[str, ...]  # every codename the action needs
    writes: bool  # an allowed call leaves an audit event; a refused one leaves none
    run: Callable[[Ctx], Any]
    prepare: Callable[[Plugin], Any] | None = None  # runs before the audit count is taken


@dataclass
class Ctx:
    role: str
    user: User | None
    plugin: Plugin
    publisher: Any
    settings: Any

    @property
    def client(self) -> Client:
        client = Client()
        if self.user is not None:
            client.force_login(self.user)
        return client

    @property
    def api(self) -> APIClient:
        client = APIClient()
        if self.user is not None:
            token, _ = Token.objects.get_or_create(user=self.user)
            client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
        return client

    def bundle(self, **fields: Any) -> bytes:
        return signed_bundle(self.publisher.private_key, guest_wasm("minimal"), **fields)

    def held(self, raw: bytes, purpose: str) -> str:
        return hold_upload(raw, self.user or AnonymousUser(), purpose)


def admin_url(name: str, *args: Any) -> str:
    return reverse(f"admin:gonext_plugins_{name}", args=args)


def upload(raw: bytes) -> SimpleUploadedFile:
    return SimpleUploadedFile("p.gnplugin", raw, content_type="application/octet-stream")


FRESH = {"slug": "fresh", "name": "Fresh", "version": "1.0.0", "capabilities": []}
FRESH_KV = {**FRESH, "capabilities": ["kv"]}
NEXT = {"slug": "demo", "version": "1.2.0", "capabilities": ["kv"], "optionalCapabilities": ["posts.read"]}


def _activate(plugin: Plugin) -> None:
    lifecycle.activate(plugin, "tests")


def _in_rollout(plugin: Plugin) -> None:
    lifecycle.rollout.start(plugin, "tests", mode="staff")


def new_key() -> dict[str, str]:
    """A fresh publisher key to trust."""
    return {"name": "New", "public_key": signing.generate_key()[1]}


def _dev_install(ctx: Ctx) -> Any:
    ctx.settings.GONEXT_PLUGINS = {**ctx.settings.GONEXT_PLUGINS, "DEV_MODE": True}
    manifest = make_manifest(slug="devfresh", version="0.1.0", capabilities=["kv"])
    files = {"manifest": SimpleUploadedFile("manifest.json", json.dumps(manifest).encode()),
             "wasm": SimpleUploadedFile("plugin.wasm", guest_wasm("minimal"))}
    return ctx.api.post("/_/plugins/dev/install", files, format="multipart")


def _admin_confirm_install(ctx: Ctx, fields: dict[str, Any], data: dict[str, Any]) -> Any:
    token = ctx.held(ctx.bundle(**fields), "install")
    return ctx.client.post(admin_url("plugin_install_confirm", token), data)


def _admin_confirm_upgrade(ctx: Ctx, grants: list[str]) -> Any:
    token = ctx.held(ctx.bundle(**NEXT), "upgrade:demo")
    return ctx.client.post(admin_url("plugin_upgrade_confirm", ctx.plugin.pk, token),
                           {"capabilities": grants, "_upgrade": "1"})


def _api_install(ctx: Ctx, fields: dict[str, Any], **data: Any) -> Any:
    return ctx.api.post("/api/plugins/", {"bundle": upload(ctx.bundle(**fields)), **data}, format="multipart")


def _api_upgrade(ctx: Ctx, **data: Any) -> Any:
    return ctx.api.post("/api/plugins/demo/upgrade/", {"bundle": upload(ctx.bundle(**NEXT)), **data},
                        format="multipart")


def _ws_logs(ctx: Ctx) -> Any:
    """The consumer's answer: ("backlog", None) when it streams, ("closed", code) when it refuses."""
    from project.asgi import application

    headers = [(b"origin", b"http://testserver"), (b"host", b"testserver")]
    if ctx.user is not None:
        client = ctx.client
        headers.append((b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode()))

    async def scenario() -> tuple[str, int | None]:
        comm = WebsocketCommunicator(application, "/_/plugins/dev/logs/demo/", headers=headers)
        connected, _ = await comm.connect()
        assert connected
        first = await comm.receive_output(timeout=5)
        await comm.disconnect()
        if first["type"] == "websocket.close":
            return "closed", first.get("code")
        return "backlog", None

    return async_to_sync(scenario)()


ACTIONS: list[Action] = [
    # the admin
    Action("admin.plugin_list", "admin", (VIEW,), False,
           lambda c: c.client.get(admin_url("plugin_changelist"))),
    Action("admin.plugin_page", "admin", (VIEW,), False,
           lambda c: c.client.get(admin_url("plugin_change", c.plugin.pk))),
    Action("admin.plugin_costs", "admin", (VIEW,), False,
           lambda c: c.client.get(admin_url("plugin_costs"))),
    Action("admin.install_form", "admin", (INSTALL,), False,
           lambda c: c.client.get(admin_url("plugin_install"))),
    Action("admin.install", "admin", (INSTALL,), True,
           lambda c: _admin_confirm_install(c, FRESH, {"_install": "1"})),
    Action("admin.install_with_grants", "admin", (INSTALL, GRANT), True,
           lambda c: _admin_confirm_install(c, FRESH_KV, {"capabilities": ["kv"], "_install": "1"})),
    Action("admin.install_and_activate", "admin", (INSTALL, ACTIVATE), True,
           lambda c: _admin_confirm_install(c, FRESH, {"_activate": "1"})),
    Action("admin.upgrade", "admin", (INSTALL,), True, lambda c: _admin_confirm_upgrade(c, ["kv"])),
    Action("admin.upgrade_with_grants", "admin", (INSTALL, GRANT), True,
           lambda c: _admin_confirm_upgrade(c, ["kv", "posts.read"])),
    Action("admin.rollback", "admin", (INSTALL,), True,
           lambda c: c.client.post(admin_url("plugin_rollback", c.plugin.pk), {"version": "1.0.0"})),
    Action("admin.uninstall", "admin", (INSTALL,), True,
           lambda c: c.client.post(admin_url("plugin_uninstall", c.plugin.pk), {})),
    Action("admin.activate", "admin", (ACTIVATE,), True,
           lambda c: c.client.post(admin_url("plugin_activate", c.plugin.pk))),
    Action("admin.rollout_start", "admin", (ACTIVATE,), True,
           lambda c: c.client.post(admin_url("plugin_rollout", c.plugin.pk), {"action": "staff"})),
    Action("admin.rollout_promote", "admin", (ACTIVATE,), True,
           lambda c: c.client.post(admin_url("plugin_rollout", c.plugin.pk), {"action": "promote"}),
           _in_rollout),
    Action("admin.deactivate", "admin", (ACTIVATE,), True,
           lambda c: c.client.post(admin_url("plugin_deactivate", c.plugin.pk)), _activate),
    Action("admin.revoke_grant", "admin", (GRANT,), True,
           lambda c: c.client.post(admin_url("plugin_revoke_grant", c.plugin.pk, "kv"))),
    Action("admin.settings_page", "admin", (VIEW,), False,
           lambda c: c.client.get(admin_url("plugin_settings", c.plugin.pk))),
    Action("admin.change_settings", "admin", (SETTINGS,), True,
           lambda c: c.client.post(admin_url("plugin_settings", c.plugin.pk), {"greeting": "hello"})),
    Action("admin.preview", "admin", (VIEW, ACTIVATE), False,
           lambda c: c.client.post(admin_url("plugin_preview", c.plugin.pk), {"path": "/"})),
    Action("admin.install_preview", "admin", (INSTALL, VIEW, ACTIVATE), False,
           lambda c: c.client.post(admin_url("plugin_install_preview", c.held(c.bundle(**FRESH), "install")),
                                   {"path": "/"})),
    Action("admin.audit_list", "admin", (AUDIT,), False,
           lambda c: c.client.get(admin_url("auditevent_changelist"))),
    Action("admin.key_list", "admin", (KEYS,), False,
           lambda c: c.client.get(admin_url("publisherkey_changelist"))),
    Action("admin.trust_key", "admin", (TRUST,), True,
           lambda c: c.client.post(admin_url("publisherkey_add"), new_key())),
    Action("admin.revoke_key", "admin", (REVOKE_KEY,), True,
           lambda c: c.client.post(admin_url("publisherkey_revoke", c.publisher.pk))),
    # the API (token authentication)
    Action("api.list", "api", (VIEW,), False, lambda c: c.api.get("/api/plugins/")),
    Action("api.retrieve", "api", (VIEW,), False, lambda c: c.api.get("/api/plugins/demo/")),
    Action("api.versions", "api", (VIEW,), False, lambda c: c.api.get("/api/plugins/demo/versions/")),
    Action("api.grants", "api", (VIEW,), False, lambda c: c.api.get("/api/plugins/demo/grants/")),
    Action("api.faults", "api", (VIEW,), False, lambda c: c.api.get("/api/plugins/demo/faults/")),
    Action("api.jobs", "api", (VIEW,), False, lambda c: c.api.get("/api/plugins/demo/jobs/")),
    Action("api.capabilities", "api", (VIEW,), False, lambda c: c.api.get("/api/capabilities/")),
    Action("api.install", "api", (INSTALL,), True, lambda c: _api_install(c, FRESH)),
    Action("api.install_with_grants", "api", (INSTALL, GRANT), True,
           lambda c: _api_install(c, FRESH_KV, grant=["kv"])),
    Action("api.install_and_activate", "api", (INSTALL, ACTIVATE), True,
           lambda c: _api_install(c, FRESH, activate="true")),
    Action("api.upgrade", "api", (INSTALL,), True, lambda c: _api_upgrade(c)),
    Action("api.upgrade_with_grants", "api", (INSTALL, GRANT), True,
           lambda c: _api_upgrade(c, grant=["posts.read"])),
    Action("api.rollback", "api", (INSTALL,), True,
           lambda c: c.api.post("/api/plugins/demo/rollback/", {"version": "1.0.0"}, format="json")),
    Action("api.uninstall", "api", (INSTALL,), True, lambda c: c.api.delete("/api/plugins/demo/")),
    Action("api.activate", "api", (ACTIVATE,), True, lambda c: c.api.post("/api/plugins/demo/activate/")),
    Action("api.deactivate", "api", (ACTIVATE,), True,
           lambda c: c.api.post("/api/plugins/demo/deactivate/"), _activate),
    Action("api.rollout", "api", (VIEW,), False, lambda c: c.api.get("/api/plugins/demo/rollout/")),
    Action("api.rollout_start", "api", (ACTIVATE,), True,
           lambda c: c.api.post("/api/plugins/demo/rollout/", {"mode": "percent", "percent": 10},
                                format="json")),
    Action("api.rollout_promote", "api", (ACTIVATE,), True,
           lambda c: c.api.post("/api/plugins/demo/rollout/promote/"), _in_rollout),
    Action("api.rollout_rollback", "api", (ACTIVATE,), True,
           lambda c: c.api.post("/api/plugins/demo/rollout/rollback/"), _in_rollout),
    Action("api.grant", "api", (GRANT,), True,
           lambda c: c.api.post("/api/plugins/demo/grants/", {"grant": ["posts.read"]}, format="json")),
    Action("api.revoke_grant", "api", (GRANT,), True,
           lambda c: c.api.delete("/api/plugins/demo/grants/?capability=kv")),
    Action("api.settings", "api", (VIEW,), False, lambda c: c.api.get("/api/plugins/demo/settings/")),
    Action("api.change_settings", "api", (SETTINGS,), True,
           lambda c: c.api.put("/api/plugins/demo/settings/", {"greeting": "hello"}, format="json")),
    Action("api.audit", "api", (AUDIT,), False, lambda c: c.api.get("/api/plugins/demo/audit/")),
    Action("api.logs", "api", (LOGS,), False, lambda c: c.api.get("/api/plugins/demo/logs/")),
    Action("api.preview", "api", (VIEW, ACTIVATE), False,
           lambda c: c.api.post("/api/plugins/demo/preview/", {"path": "/"}, format="json")),
    Action("api.key_list", "api", (KEYS,), False, lambda c: c.api.get("/api/keys/")),
    Action("api.trust_key", "api", (TRUST,), True,
           lambda c: c.api.post("/api/keys/", new_key(), format="json")),
    Action("api.revoke_key", "api", (REVOKE_KEY,), True,
           lambda c: c.api.delete(f"/api/keys/?fingerprint={c.publisher.fingerprint}")),
    # the plain views and the dev endpoint
    Action("view.log_page", "admin", (LOGS,), False, lambda c: c.client.get("/_/plugins/logs/demo/")),
    Action("view.metrics", "metrics", (VIEW,), False,
           lambda c: c.client.get("/metrics", REMOTE_ADDR="203.0.113.9")),
    Action("view.dev_install", "api", (INSTALL, ACTIVATE, GRANT), True, _dev_install),
    # the WebSocket consumer
    Action("ws.logs", "ws", (LOGS,), False, _ws_logs),
]


def expected_allowed(role: str, action: Action) -> bool:
    if role == "superuser":
        return True
    held = {role.removeprefix("only:")} if role.startswith("only:") else set()
    return set(action.needs) <= held


# --- fixtures -----------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _fast_and_fresh(settings: Any) -> None:
    """Cheap passwords, no throttling across cells, and a fresh in-memory channel layer."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {
        "gonext_plugins.read": "100000/min", "gonext_plugins.write": "100000/min"}}
    cache.clear()
    channel_layers.backends.clear()


def make_role(role: str) -> User | None:
    if role == "anonymous":
        return None
    if role == "superuser":
        return User.objects.create_superuser("root", "root@example.com", None)
    user = User.objects.create_user(role.replace(":", "_"), is_staff=role != "plain_user")
    if role.startswith("only:"):
        user.user_permissions.add(Permission.objects.get(
            codename=role.removeprefix("only:"), content_type__app_label="gonext_plugins"))
    return user


@pytest.fixture
def demo(publisher: Any) -> Plugin:
    """``demo``: 1.0.0 then 1.1.0 installed (kv granted, optional posts.read not), inactive."""
    wasm = guest_wasm("minimal")
    fields = {"slug": "demo", "capabilities": ["kv"], "optionalCapabilities": ["posts.read"]}
    first = bundle.read(signed_bundle(publisher.private_key, wasm, version="1.0.0", **fields))
    plugin = lifecycle.install(first, ["kv"], "tests").plugin
    settings = {"type": "object", "properties": {"greeting": {"type": "string", "default": "hi"}}}
    second = bundle.read(signed_bundle(publisher.private_key, wasm, version="1.1.0", settings=settings,
                                       **fields))
    lifecycle.upgrade(plugin, second, [], "tests")
    plugin.refresh_from_db()
    assert plugin.state == PluginState.INACTIVE
    return plugin


# --- the matrix ---------------------------------------------------------------------------------------


def assert_refused(action: Action, role: str, outcome: Any) -> None:
    signed_in_staff = role not in ("anonymous", "plain_user")
    if action.kind == "ws":
        assert outcome == ("closed", 4403), outcome
    elif action.kind == "admin":
        if signed_in_staff:
            assert outcome.status_code == 403, (outcome.status_code, outcome.get("Location"))
        else:
            assert outcome.status_code == 302, outcome.status_code
            assert outcome["Location"].startswith(reverse("admin:login")), outcome["Location"]
    elif action.kind == "api":
        if role == "anonymous":
            assert_error(outcome, 401, "not_authenticated")
        else:
            assert_error(outcome, 403, "permission_denied")
    else:
        assert outcome.status_code == 403, outcome.status_code


def assert_done(action: Action, outcome: Any) -> None:
    if action.kind == "ws":
        assert outcome == ("backlog", None), outcome
        return
    assert outcome.status_code < 400, (outcome.status_code, outcome.content[:500])
    location = outcome.get("Location", "") if outcome.status_code in (301, 302) else ""
    assert not location.startswith(reverse("admin:login")), location


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("action", ACTIONS, ids=[a.name for a in ACTIONS])
def test_permission_matrix(action: Action, role: str, demo: Plugin, publisher: Any, settings: Any) -> None:
    ctx = Ctx(role, make_role(role), demo, publisher, settings)
    allowed = expected_allowed(role, action)
    if action.prepare is not None:
        action.prepare(demo)
    before = AuditEvent.objects.count()
    outcome = action.run(ctx)
    written = AuditEvent.objects.count() - before
    if allowed:
        assert_done(action, outcome)
        if action.writes:
            assert written > 0, f"{action.name} was allowed for {role} but did nothing"
    else:
        assert_refused(action, role, outcome)
        assert written == 0, f"{action.name} was refused for {role} but wrote {written} audit event(s)"


# --- the grant rule on upgrade: other hosts for http.fetch are a grant too ----------------------------


def test_upgrade_that_changes_fetch_hosts_needs_the_grant_permission(publisher: Any) -> None:
    """``install_plugin`` may upgrade a plugin holding ``http.fetch`` with the hosts it already
    has, but widening them is granting, refused (403, nothing written) without ``grant_capability``."""
    fields = {"slug": "fetcher", "capabilities": ["http.fetch"],
              "http": {"allowedHosts": ["a.example.com", "b.example.com"]}}
    wasm = guest_wasm("minimal")
    first = bundle.read(signed_bundle(publisher.private_key, wasm, version="1.0.0", **fields))
    lifecycle.install(first, ["http.fetch"], "tests", hosts=["a.example.com"])
    ctx = Ctx("only:install_plugin", make_role("only:install_plugin"), Plugin.objects.get(slug="fetcher"),
              publisher, None)

    def upgrade(version: str, hosts: list[str]) -> Any:
        raw = signed_bundle(publisher.private_key, wasm, version=version, **fields)
        return ctx.api.post("/api/plugins/fetcher/upgrade/",
                            {"bundle": upload(raw), "hosts": hosts}, format="multipart")

    before = AuditEvent.objects.count()
    data = assert_error(upgrade("1.1.0", ["a.example.com", "b.example.com"]), 403, "permission_denied")
    assert "gonext_plugins.grant_capability" in data["detail"]
    assert AuditEvent.objects.count() == before
    assert upgrade("1.1.0", ["a.example.com"]).status_code == 200
    assert Plugin.objects.get(slug="fetcher").grants.get(capability="http.fetch").hosts == ["a.example.com"]
