"""The plugin admin through Django's test client: permissions on every URL and action, every
refusal path of the two-step install and upgrade, and that nothing is written before confirm.

Real database, storage and wasmtime; the blog page is fetched to see a plugin's output.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any
from unittest import mock

import pytest
from django.contrib.auth.models import Permission, User
from django.core.files.base import ContentFile
from django.test import Client
from django.urls import reverse

from gonext_plugins import bundle, lifecycle, signing
from gonext_plugins.admin_views import PENDING_PREFIX, hold_upload
from gonext_plugins.models import (
    AuditEvent,
    CapabilityGrant,
    Plugin,
    PluginState,
    PluginVersion,
    PublisherKey,
)
from gonext_plugins.stats import stats
from gonext_plugins.storage import get_storage
from project.blog.models import Post
from tests.conftest import guest_wasm, make_manifest

MARKER = "Marked by the gonext marker plugin"
HOOKS = [{"name": "the_content", "kind": "filter"}]
CUSTOM_PERMS = ["install_plugin", "activate_plugin", "grant_capability", "view_plugin_logs",
                "add_publisherkey", "change_publisherkey", "view_auditevent"]


# --- bundles --------------------------------------------------------------------------------------


def marker_manifest(version: str = "1.0.0", **fields: Any) -> dict[str, Any]:
    """The marker plugin: a the_content filter that appends a marker paragraph."""
    values: dict[str, Any] = {
        "slug": "marker", "name": "Marker", "version": version, "author": "Tests",
        "homepage": "https://example.com/marker", "description": "Appends a marker to posts.",
        "capabilities": ["hooks.subscribe"], "optionalCapabilities": ["kv"], "hooks": HOOKS,
    }
    values.update(fields)
    return make_manifest(**values)


def signed_bundle(private_key: str, version: str = "1.0.0", wasm: bytes | None = None,
                  **fields: Any) -> bytes:
    """The bytes of a bundle signed with ``private_key``."""
    wasm = wasm if wasm is not None else guest_wasm("marker_guest")
    raw = bundle.pack(marker_manifest(version, **fields), wasm)
    return bundle.sign(raw, private_key)


def upload(client: Client, url: str, data: bytes, name: str = "plugin.gnplugin") -> Any:
    return client.post(url, {"bundle": ContentFile(data, name=name)})


def pending_files() -> list[str]:
    try:
        return get_storage().listdir(PENDING_PREFIX)[1]
    except FileNotFoundError:
        return []


def blob_files() -> list[str]:
    storage = get_storage()
    try:
        folders = storage.listdir("gonext_plugins/blobs")[0]
    except FileNotFoundError:
        return []
    return [name for folder in folders for name in storage.listdir(f"gonext_plugins/blobs/{folder}")[1]]


def nothing_written() -> bool:
    keys = ["trust_key", "revoke_key"]
    return not (Plugin.objects.exists() or PluginVersion.objects.exists() or CapabilityGrant.objects.exists()
                or AuditEvent.objects.exclude(action__in=keys).exists() or blob_files())


def admin_url(name: str, *args: Any) -> str:
    return reverse(f"admin:gonext_plugins_{name}", args=args)


# --- users ------------------------------------------------------------------------------------------


def make_user(username: str, perms: list[str], *, superuser: bool = False) -> User:
    if superuser:
        return User.objects.create_superuser(username, f"{username}@example.com", "pw")
    user = User.objects.create_user(username, password="pw", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(content_type__app_label="gonext_plugins",
                                                        codename__in=perms))
    return user


@pytest.fixture
def users(db: None) -> dict[str, User]:
    viewer_perms = ["view_plugin", "view_publisherkey"]
    return {
        "viewer": make_user("viewer", viewer_perms),
        "manager": make_user("manager", viewer_perms + CUSTOM_PERMS),
        "root": make_user("root", [], superuser=True),
    }


def client_for(user: User | None) -> Client:
    client = Client()
    if user is not None:
        client.force_login(user)
    return client


@pytest.fixture
def manager(users: dict[str, User]) -> Client:
    return client_for(users["manager"])


@pytest.fixture
def installed(publisher: Any, users: dict[str, User]) -> Plugin:
    """The marker plugin, version 1.0.0, installed and active."""
    data = bundle.read(signed_bundle(publisher.private_key))
    return lifecycle.install(data, ["hooks.subscribe"], users["root"], activate=True).plugin


@pytest.fixture(autouse=True)
def _fresh_stats() -> Iterator[None]:
    stats.reset()
    yield


# --- permissions ----------------------------------------------------------------------------------


def every_url(plugin: Plugin, key: PublisherKey, install_token: str, upgrade_token: str) -> dict[str, str]:
    return {
        "install": admin_url("plugin_install"),
        "install_confirm": admin_url("plugin_install_confirm", install_token),
        "upgrade": admin_url("plugin_upgrade", plugin.pk),
        "upgrade_confirm": admin_url("plugin_upgrade_confirm", plugin.pk, upgrade_token),
        "activate": admin_url("plugin_activate", plugin.pk),
        "deactivate": admin_url("plugin_deactivate", plugin.pk),
        "rollback": admin_url("plugin_rollback", plugin.pk),
        "revoke_grant": admin_url("plugin_revoke_grant", plugin.pk, "hooks.subscribe"),
        "uninstall": admin_url("plugin_uninstall", plugin.pk),
        "key_add": admin_url("publisherkey_add"),
        "key_revoke": admin_url("publisherkey_revoke", key.pk),
    }


@pytest.fixture
def urls(installed: Plugin, publisher: Any, users: dict[str, User]) -> dict[str, str]:
    other = bundle.pack(marker_manifest(slug="other"), guest_wasm("marker_guest"))
    v2 = signed_bundle(publisher.private_key, "2.0.0")
    return every_url(installed, publisher,
                     hold_upload(bundle.sign(other, publisher.private_key), users["manager"], "install"),
                     hold_upload(v2, users["manager"], "upgrade:marker"))


def test_anonymous_is_sent_to_login_everywhere(urls: dict[str, str], installed: Plugin) -> None:
    client = Client()
    for url in [*urls.values(), admin_url("plugin_changelist"), admin_url("plugin_change", installed.pk)]:
        for method in (client.get, client.post):
            response = method(url)
            assert response.status_code == 302, url
            assert response["Location"].startswith(reverse("admin:login")), url
    assert installed.state == PluginState.ACTIVE


def test_staff_without_permissions_gets_403_and_no_buttons(urls: dict[str, str], installed: Plugin,
                                                            users: dict[str, User]) -> None:
    client = client_for(users["viewer"])
    for name, url in urls.items():
        assert client.get(url).status_code == 403, name
        assert client.post(url, {"version": "1.0.0"}).status_code == 403, name
    page = client.get(admin_url("plugin_changelist")).content.decode()
    assert "Install plugin" not in page and "Activate selected" not in page
    page = client.get(admin_url("plugin_change", installed.pk)).content.decode()
    for button in ("Upgrade…", "Uninstall…", "Revoke…", "gn-deactivate", "Roll back", "Live log"):
        assert button not in page, button
    keys = client.get(admin_url("publisherkey_changelist")).content.decode()
    assert "Trust a publisher key" not in keys and "Revoke…" not in keys
    # a crafted bulk action does nothing without the permission
    response = client.post(admin_url("plugin_changelist"),
                           {"action": "deactivate_selected", "_selected_action": [installed.pk]})
    assert response.status_code in (200, 302)
    installed.refresh_from_db()
    assert installed.state == PluginState.ACTIVE


def test_staff_with_no_model_permission_at_all_gets_403(installed: Plugin) -> None:
    client = client_for(make_user("nobody", []))
    assert client.get(admin_url("plugin_changelist")).status_code == 403
    assert client.get(admin_url("plugin_change", installed.pk)).status_code == 403
    assert client.get(admin_url("plugin_install")).status_code == 403


@pytest.mark.parametrize("who", ["manager", "root"])
def test_permitted_users_see_buttons_and_pages(who: str, urls: dict[str, str], installed: Plugin,
                                               users: dict[str, User]) -> None:
    client = client_for(users[who])
    page = client.get(admin_url("plugin_changelist")).content.decode()
    assert "Install plugin" in page and "Activate selected plugins" in page
    page = client.get(admin_url("plugin_change", installed.pk)).content.decode()
    for button in ("Upgrade…", "Uninstall…", "Revoke…", "gn-deactivate", "Live log",
                   "/_/plugins/logs/marker/"):
        assert button in page, button
    for name in ("install", "upgrade", "revoke_grant", "uninstall", "key_add", "key_revoke"):
        assert client.get(urls[name]).status_code == 200, name
    if who == "manager":  # tokens are bound to the user who uploaded
        for name in ("install_confirm", "upgrade_confirm"):
            assert client.get(urls[name]).status_code == 200, name
    else:
        assert client.get(urls["install_confirm"]).status_code == 302


def test_every_form_needs_csrf(installed: Plugin, users: dict[str, User]) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(users["root"])
    for url in (admin_url("plugin_deactivate", installed.pk), admin_url("plugin_install"),
                admin_url("plugin_uninstall", installed.pk), admin_url("publisherkey_add")):
        assert client.post(url).status_code == 403, url
    installed.refresh_from_db()
    assert installed.state == PluginState.ACTIVE
    page = client.get(admin_url("plugin_change", installed.pk)).content.decode()
    assert page.count("csrfmiddlewaretoken") >= 3  # activate, deactivate, and the change form


# --- install: the happy path and nothing written before confirm ------------------------------------


def test_the_dialog_points_out_a_limit_the_site_lowers(publisher: Any, manager: Client) -> None:
    """Asking for more than the site's cap is allowed (the plugin gets the cap), but the admin sees
    it: the plugin may run out of fuel or time where its author expected room."""
    from gonext_plugins.registry import host_limits

    cap = host_limits().fuel
    assert cap is not None
    raw = signed_bundle(publisher.private_key, limits={"fuel": cap * 4, "timeoutMs": 10})
    dialog = manager.get(upload(manager, admin_url("plugin_install"), raw)["Location"]).content.decode()
    lowered = re.findall(r'<tr class="gn-limit-lowered"><th scope="row">([^<]+)</th>', dialog)
    assert lowered == ["Fuel per call"]  # 10 ms is within the cap: not lowered
    assert "lowered to the site's cap" in dialog


@pytest.mark.django_db(transaction=True)
def test_install_and_activate_shows_everything_then_runs(publisher: Any, manager: Client) -> None:
    post = Post.objects.create(title="Hello", slug="hello", body="First post.")
    raw = signed_bundle(publisher.private_key, limits={"fuel": 1_000_000})
    response = upload(manager, admin_url("plugin_install"), raw)
    assert response.status_code == 302
    assert nothing_written() and len(pending_files()) == 1
    dialog = manager.get(response["Location"]).content.decode()
    for text in ("Marker", "1.0.0", "Tests", "https://example.com/marker", "Test publisher",
                 publisher.fingerprint, "✓ valid", bundle.read(raw).bundle_sha256, "the_content",
                 "hooks.subscribe", "medium risk", "kv", "low risk", "Install and activate",
                 "It asks for", "This site's cap"):
        assert text in dialog, text
    # required: locked and sent as hidden; optional: a toggle, off by default
    assert re.search(r'checked disabled aria-label="hooks.subscribe \(locked\)"', dialog)
    assert 'type="hidden" name="capabilities" value="hooks.subscribe"' in dialog
    assert re.search(r'name="capabilities" value="kv"[^>]*\n\s*aria-label', dialog)
    assert nothing_written()

    response = manager.post(response["Location"], {"capabilities": ["hooks.subscribe", "kv"],
                                                   "_activate": "1"})
    plugin = Plugin.objects.get(slug="marker")
    assert response.status_code == 302 and response["Location"] == admin_url("plugin_change", plugin.pk)
    assert plugin.state == PluginState.ACTIVE
    assert lifecycle.granted_capabilities(plugin) == {"hooks.subscribe", "kv"}
    assert [e.action for e in AuditEvent.objects.filter(plugin_slug="marker").order_by("id")] == \
        ["install", "activate"]
    assert AuditEvent.objects.get(action="install").actor_label == "manager"
    assert pending_files() == []
    assert MARKER in Client().get(post.get_absolute_url()).content.decode()

    listing = manager.get(admin_url("plugin_changelist")).content.decode()
    for text in ("gn-state-active", "Test publisher", "✓ signed", "2 of 2", "<code>the_content</code>"):
        assert text in listing, text
    assert re.search(r'>1<br><span class="gn-quiet">\d+\.\d\d ms</span>', listing)  # calls, median


def test_install_without_activate_stays_inactive(publisher: Any, manager: Client) -> None:
    response = upload(manager, admin_url("plugin_install"), signed_bundle(publisher.private_key))
    manager.post(response["Location"], {"capabilities": ["hooks.subscribe"], "_install": "1"})
    plugin = Plugin.objects.get(slug="marker")
    assert plugin.state == PluginState.INACTIVE
    assert lifecycle.granted_capabilities(plugin) == {"hooks.subscribe"}


def test_high_risk_capabilities_are_called_out_and_hosts_offered(publisher: Any, manager: Client) -> None:
    raw = signed_bundle(publisher.private_key, optionalCapabilities=["http.fetch"],
                        http={"allowedHosts": ["api.example.com", "cdn.example.com"]})
    dialog = manager.get(upload(manager, admin_url("plugin_install"), raw)["Location"]).content.decode()
    assert 'id="gn-high-risk"' in dialog and "High risk: 1 capability" in dialog
    assert "http.fetch" in dialog and "high risk" in dialog and "api.example.com" in dialog
    token_url = upload(manager, admin_url("plugin_install"), raw)["Location"]
    manager.post(token_url, {"capabilities": ["hooks.subscribe", "http.fetch"],
                             "hosts": ["api.example.com"]})
    grant = CapabilityGrant.objects.get(capability="http.fetch")
    assert grant.hosts == ["api.example.com"]


def test_cancel_discards_the_upload(publisher: Any, manager: Client) -> None:
    location = upload(manager, admin_url("plugin_install"), signed_bundle(publisher.private_key))["Location"]
    response = manager.post(location, {"_cancel": "1"})
    assert response.status_code == 302 and pending_files() == [] and nothing_written()
    assert manager.get(location).status_code == 302  # the token now names nothing


# --- install: every refusal -------------------------------------------------------------------------


def refusal(response: Any) -> str:
    assert response.status_code == 200
    page = response.content.decode()
    assert 'id="gn-upload-error"' in page
    return page


def test_not_a_zip_is_refused_plainly(manager: Client, publisher: Any) -> None:
    page = refusal(upload(manager, admin_url("plugin_install"), b"MZ\x90\x00 definitely not a zip"))
    assert "this file is not a plugin bundle" in page.lower()
    assert nothing_written() and pending_files() == []


def test_untrusted_key_is_refused_with_its_fingerprint(manager: Client, publisher: Any) -> None:
    private, public = signing.generate_key()
    fingerprint = signing.fingerprint(signing.b64decode_exact(public, signing.KEY_BYTES, "key"))
    page = refusal(upload(manager, admin_url("plugin_install"), signed_bundle(private)))
    assert f"signed by an untrusted key: {fingerprint}" in page
    assert "Trusted publisher keys" in page
    assert nothing_written() and pending_files() == []


def test_revoked_key_is_refused(manager: Client, publisher: Any) -> None:
    lifecycle.revoke_key(publisher, "tests")
    page = refusal(upload(manager, admin_url("plugin_install"), signed_bundle(publisher.private_key)))
    assert f"signed by a revoked key: {publisher.fingerprint}" in page
    assert nothing_written()


def test_unsigned_bundle_is_refused(manager: Client, publisher: Any) -> None:
    raw = bundle.pack(marker_manifest(), guest_wasm("marker_guest"))
    page = refusal(upload(manager, admin_url("plugin_install"), raw))
    assert "not signed" in page


def test_manifest_problems_are_listed_with_their_paths(manager: Client, publisher: Any) -> None:
    bad = marker_manifest(version="one", hooks=[{"name": "the_content", "kind": "sideways"}])
    raw = bundle._write_zip({"manifest.json": bundle._manifest_bytes(bad), "plugin.wasm": guest_wasm()})
    page = refusal(upload(manager, admin_url("plugin_install"), raw))
    assert "manifest has 2 problems" in page
    assert "<code>$.version</code>" in page and "<code>$.hooks[0].kind</code>" in page
    assert nothing_written()


def test_slug_that_exists_is_refused_at_upload_and_at_confirm(publisher: Any, manager: Client) -> None:
    raw = signed_bundle(publisher.private_key)
    first = upload(manager, admin_url("plugin_install"), raw)["Location"]
    second = upload(manager, admin_url("plugin_install"), raw)["Location"]
    manager.post(first, {"capabilities": ["hooks.subscribe"]})
    assert Plugin.objects.count() == 1
    page = manager.post(second, {"capabilities": ["hooks.subscribe"]}).content.decode()
    assert "already installed; upgrade it instead" in page and 'id="gn-confirm-error"' in page
    page = refusal(upload(manager, admin_url("plugin_install"), raw))
    assert "already installed; open it and use Upgrade" in page
    assert PluginVersion.objects.count() == 1


def test_missing_consent_is_refused(publisher: Any, manager: Client) -> None:
    location = upload(manager, admin_url("plugin_install"), signed_bundle(publisher.private_key))["Location"]
    response = manager.post(location, {"capabilities": ["kv"], "_activate": "1"})  # hooks.subscribe left out
    page = response.content.decode()
    assert response.status_code == 200
    assert "cannot run without: hooks.subscribe" in page and "tick to consent" in page
    assert nothing_written() and len(pending_files()) == 1  # the admin may tick and try again
    manager.post(location, {"capabilities": ["hooks.subscribe"], "_activate": "1"})
    assert Plugin.objects.get().state == PluginState.ACTIVE


def test_capabilities_it_did_not_ask_for_are_refused(publisher: Any, manager: Client) -> None:
    location = upload(manager, admin_url("plugin_install"), signed_bundle(publisher.private_key))["Location"]
    response = manager.post(location, {"capabilities": ["hooks.subscribe", "http.fetch"]})
    assert response.status_code == 200
    assert "Only the capabilities this plugin asks for can be granted" in response.content.decode()
    assert nothing_written()


def test_a_tampered_pending_file_is_refused_on_confirm(publisher: Any, manager: Client) -> None:
    location = upload(manager, admin_url("plugin_install"), signed_bundle(publisher.private_key))["Location"]
    [name] = pending_files()
    storage = get_storage()
    path = f"{PENDING_PREFIX}/{name}"
    with storage.open(path, "rb") as handle:
        raw = handle.read()
    storage.delete(path)
    storage.save(path, ContentFile(raw[:-1] + bytes([raw[-1] ^ 1])))
    response = manager.post(location, {"capabilities": ["hooks.subscribe"]}, follow=True)
    assert "changed on the server after you reviewed it" in response.content.decode()
    assert nothing_written() and pending_files() == []


@pytest.mark.parametrize("token", ["garbage", "a:b:c", "x" * 300])
def test_unknown_tokens_are_refused(token: str, manager: Client, publisher: Any) -> None:
    response = manager.post(admin_url("plugin_install_confirm", token), {"capabilities": ["hooks.subscribe"]},
                            follow=True)
    assert "This upload is unknown" in response.content.decode()
    assert nothing_written()


def test_expired_token_is_refused(publisher: Any, users: dict[str, User], manager: Client) -> None:
    with mock.patch("django.core.signing.time.time", return_value=time.time() - 3700):
        token = hold_upload(signed_bundle(publisher.private_key), users["manager"], "install")
    response = manager.get(admin_url("plugin_install_confirm", token), follow=True)
    assert "This upload has expired" in response.content.decode()
    response = manager.post(admin_url("plugin_install_confirm", token), {"capabilities": ["hooks.subscribe"]})
    assert nothing_written()


def test_another_users_token_is_unknown(publisher: Any, users: dict[str, User]) -> None:
    token = hold_upload(signed_bundle(publisher.private_key), users["manager"], "install")
    response = client_for(users["root"]).get(admin_url("plugin_install_confirm", token), follow=True)
    assert "This upload is unknown" in response.content.decode()


def test_a_key_revoked_between_upload_and_confirm_is_refused(publisher: Any, manager: Client) -> None:
    location = upload(manager, admin_url("plugin_install"), signed_bundle(publisher.private_key))["Location"]
    lifecycle.revoke_key(publisher, "tests")
    response = manager.post(location, {"capabilities": ["hooks.subscribe"]}, follow=True)
    assert "signed by a revoked key" in response.content.decode()
    assert nothing_written() and pending_files() == []


def test_old_pending_files_are_swept(publisher: Any, users: dict[str, User], settings: Any) -> None:
    import os

    hold_upload(b"old", users["manager"], "install")
    [name] = pending_files()
    path = os.path.join(settings.MEDIA_ROOT, PENDING_PREFIX, name)
    os.utime(path, (time.time() - 7200, time.time() - 7200))
    hold_upload(b"new", users["manager"], "install")
    assert name not in pending_files() and len(pending_files()) == 1


# --- upgrade ------------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_upgrade_shows_the_capability_diff_and_needs_consent(installed: Plugin, publisher: Any,
                                                             manager: Client) -> None:
    raw = signed_bundle(publisher.private_key, "1.1.0", capabilities=["hooks.subscribe", "posts.read"],
                        optionalCapabilities=[])
    location = upload(manager, admin_url("plugin_upgrade", installed.pk), raw)["Location"]
    dialog = manager.get(location).content.decode()
    assert re.search(r"<strong>1.0.0</strong> &rarr; <strong>1.1.0</strong>", dialog)
    row = re.search(r'<tr class="gn-cap-low gn-cap-new" data-capability="posts.read".*?</tr>', dialog, re.S)
    assert row and "NEW" in row.group(0) and "needs your consent" in row.group(0)
    assert 'name="capabilities" value="posts.read"' in row.group(0) and "checked" not in row.group(0)
    dropped = re.search(r'id="gn-dropped".*?</div>', dialog, re.S)
    assert dropped and "kv" in dropped.group(0)
    # without ticking the new capability: refused, the old version keeps running
    page = manager.post(location, {"capabilities": ["hooks.subscribe"]}).content.decode()
    assert "cannot run without: posts.read" in page
    installed.refresh_from_db()
    assert installed.active_version.version == "1.0.0" and installed.state == PluginState.ACTIVE
    response = manager.post(location, {"capabilities": ["hooks.subscribe", "posts.read"]})
    assert response.status_code == 302
    installed.refresh_from_db()
    assert installed.active_version.version == "1.1.0" and installed.state == PluginState.ACTIVE
    event = AuditEvent.objects.get(action="upgrade")
    assert event.details["capabilities_added"] == ["posts.read"]
    assert event.details["capabilities_dropped"] == ["kv"]


def test_upgrade_version_conflict_is_refused_at_upload_and_at_confirm(installed: Plugin, publisher: Any,
                                                                      manager: Client) -> None:
    same_version_other_bytes = signed_bundle(publisher.private_key, "1.0.0", description="changed")
    page = refusal(upload(manager, admin_url("plugin_upgrade", installed.pk), same_version_other_bytes))
    assert "already installed with different contents" in page
    v2 = signed_bundle(publisher.private_key, "2.0.0")
    location = upload(manager, admin_url("plugin_upgrade", installed.pk), v2)["Location"]
    rival = bundle.read(signed_bundle(publisher.private_key, "2.0.0", description="a rival 2.0.0"))
    lifecycle.upgrade(installed, rival, [], "someone else")
    page = manager.post(location, {"capabilities": ["hooks.subscribe"]}).content.decode()
    assert "already installed with different contents" in page
    assert PluginVersion.objects.filter(version="2.0.0").get().manifest["description"] == "a rival 2.0.0"


def test_upgrade_refuses_other_plugins_older_versions_and_same_bytes(installed: Plugin, publisher: Any,
                                                                    manager: Client) -> None:
    url = admin_url("plugin_upgrade", installed.pk)
    assert "not &#x27;marker&#x27;" in refusal(upload(manager, url, signed_bundle(publisher.private_key,
                                                                                    slug="other")))
    assert "nothing to upgrade" in refusal(upload(manager, url, signed_bundle(publisher.private_key)))
    lifecycle.upgrade(installed, bundle.read(signed_bundle(publisher.private_key, "3.0.0")), [], "tests")
    assert "older than the installed 3.0.0" in refusal(upload(manager, url,
                                                              signed_bundle(publisher.private_key, "2.0.0")))


def test_upgrade_token_cannot_install_and_vice_versa(installed: Plugin, publisher: Any, manager: Client,
                                                    users: dict[str, User]) -> None:
    token = hold_upload(signed_bundle(publisher.private_key, "2.0.0"), users["manager"], "upgrade:marker")
    response = manager.get(admin_url("plugin_install_confirm", token), follow=True)
    assert "This upload is unknown" in response.content.decode()


# --- the plugin page --------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_activate_deactivate_and_bulk_actions(installed: Plugin, manager: Client) -> None:
    post = Post.objects.create(title="Hello", slug="hello", body="Body.")
    assert MARKER in Client().get(post.get_absolute_url()).content.decode()
    response = manager.post(admin_url("plugin_deactivate", installed.pk), follow=True)
    assert "Marker is deactivated." in response.content.decode()
    assert MARKER not in Client().get(post.get_absolute_url()).content.decode()
    manager.post(admin_url("plugin_changelist"), {"action": "activate_selected",
                                                 "_selected_action": [installed.pk]})
    installed.refresh_from_db()
    assert installed.state == PluginState.ACTIVE
    manager.post(admin_url("plugin_changelist"), {"action": "deactivate_selected",
                                                 "_selected_action": [installed.pk]})
    installed.refresh_from_db()
    assert installed.state == PluginState.INACTIVE
    # GET changes nothing
    manager.get(admin_url("plugin_activate", installed.pk))
    installed.refresh_from_db()
    assert installed.state == PluginState.INACTIVE


def test_activation_refusal_is_reported(installed: Plugin, manager: Client) -> None:
    lifecycle.revoke(installed, "hooks.subscribe", "tests")
    response = manager.post(admin_url("plugin_activate", installed.pk), follow=True)
    assert "was not activated" in response.content.decode() and "hooks.subscribe" in response.content.decode()


def test_rollback_buttons(installed: Plugin, publisher: Any, manager: Client) -> None:
    lifecycle.upgrade(installed, bundle.read(signed_bundle(publisher.private_key, "2.0.0")), [], "tests")
    page = manager.get(admin_url("plugin_change", installed.pk)).content.decode()
    assert "Roll back to 1.0.0" in page and "Roll back to 2.0.0" not in page
    manager.post(admin_url("plugin_rollback", installed.pk), {"version": "1.0.0"})
    installed.refresh_from_db()
    assert installed.active_version.version == "1.0.0"
    page = manager.get(admin_url("plugin_change", installed.pk)).content.decode()
    assert "Switch to 2.0.0" in page
    response = manager.post(admin_url("plugin_rollback", installed.pk), {"version": "9.9.9"}, follow=True)
    assert "version 9.9.9 is not installed" in response.content.decode()


def test_revoke_grant_with_confirmation(installed: Plugin, manager: Client) -> None:
    url = admin_url("plugin_revoke_grant", installed.pk, "hooks.subscribe")
    page = manager.get(url).content.decode()
    assert "will be deactivated at once" in page and "hooks are disconnected" in page
    assert CapabilityGrant.objects.filter(capability="hooks.subscribe").exists()
    manager.post(url)
    installed.refresh_from_db()
    assert not CapabilityGrant.objects.filter(capability="hooks.subscribe").exists()
    assert installed.state == PluginState.INACTIVE
    assert manager.get(url).status_code == 404


def test_a_revoked_required_capability_is_granted_back_then_the_plugin_activates(
        installed: Plugin, manager: Client) -> None:
    """Revoking a required capability deactivates the plugin; the admin then offers "Grant…" on that
    row (it offered nothing: only `manage.py plugin grant` could bring the plugin back)."""
    manager.post(admin_url("plugin_revoke_grant", installed.pk, "hooks.subscribe"))
    grant_url = admin_url("plugin_grant", installed.pk, "hooks.subscribe")
    page = manager.get(admin_url("plugin_change", installed.pk)).content.decode()
    assert grant_url in page
    confirm = manager.get(grant_url).content.decode()
    assert "can be activated again" in confirm and "granting does not activate it" in confirm
    response = manager.post(grant_url, follow=True)
    assert "Granted hooks.subscribe to" in response.content.decode()
    assert CapabilityGrant.objects.filter(plugin=installed, capability="hooks.subscribe").exists()
    manager.post(admin_url("plugin_activate", installed.pk))
    installed.refresh_from_db()
    assert installed.state == PluginState.ACTIVE
    assert manager.get(admin_url("plugin_grant", installed.pk, "posts.write")).status_code == 404  # not asked
    viewer = client_for(make_user("grant_viewer", ["view_plugin"]))
    assert viewer.get(grant_url).status_code == 403


@pytest.mark.django_db(transaction=True)
def test_uninstall_says_what_will_be_deleted(installed: Plugin, manager: Client) -> None:
    url = admin_url("plugin_uninstall", installed.pk)
    page = manager.get(url).content.decode()
    for text in ("1 version: 1.0.0", "1 stored wasm file", "its grants: hooks.subscribe",
                 "stops running in every process", "key-value row", "audit log of this plugin is kept"):
        assert text in page, text
    response = manager.post(url)
    assert response.status_code == 302 and not Plugin.objects.exists() and blob_files() == []
    assert AuditEvent.objects.filter(action="uninstall", plugin_slug="marker").exists()


def test_plugin_page_shows_faults_audit_and_stats(installed: Plugin, manager: Client) -> None:
    lifecycle.record_fault("marker", "trap", "wasm trap: unreachable", version="1.0.0", hook="the_content",
                           guest_message="boom: the guest said so")
    page = manager.get(admin_url("plugin_change", installed.pk)).content.decode()
    for text in ("boom: the guest said so", "wasm trap: unreachable", "install", "activate",
                 "gn-state-active", "0 calls"):
        assert text in page, text
    assert 'id="gn-audit"' in page
    viewer = client_for(make_user("plain_viewer", ["view_plugin"]))  # the audit trail needs view_auditevent
    assert 'id="gn-audit"' not in viewer.get(admin_url("plugin_change", installed.pk)).content.decode()
    listing = manager.get(admin_url("plugin_changelist")).content.decode()
    assert ">trap</span>" in listing and "no calls" in listing and "this server process" in listing


def test_history_leads_to_the_plugins_audit_trail(installed: Plugin, manager: Client) -> None:
    """Django's History page listed admin LogEntry rows, which no plugin change writes: it was empty."""
    response = manager.get(admin_url("plugin_history", installed.pk))
    assert response.status_code == 302
    assert response["Location"] == admin_url("plugin_change", installed.pk) + "#gn-audit"


def test_log_link_needs_view_plugin_logs(installed: Plugin) -> None:
    perms = ["view_plugin", "install_plugin"]
    page = client_for(make_user("nologs", perms)).get(admin_url("plugin_change", installed.pk))
    assert "/_/plugins/logs/marker/" not in page.content.decode()
    page = client_for(make_user("logs", [*perms, "view_plugin_logs"])).get(admin_url("plugin_change",
                                                                                      installed.pk))
    assert "/_/plugins/logs/marker/" in page.content.decode()


# --- trusted keys -------------------------------------------------------------------------------------


def test_trust_key_is_validated(manager: Client, publisher: Any) -> None:
    url = admin_url("publisherkey_add")
    page = manager.post(url, {"name": "Bad", "public_key": "not base64!"}).content.decode()
    assert "Not an ed25519 public key" in page and PublisherKey.objects.count() == 1
    _, public = signing.generate_key()
    response = manager.post(url, {"name": "Acme", "public_key": public}, follow=True)
    key = PublisherKey.objects.get(name="Acme")
    assert key.usable and key.fingerprint in response.content.decode()
    assert AuditEvent.objects.filter(action="trust_key", details__key="Acme").exists()


def test_revoke_key_shows_consequences_then_deactivates(installed: Plugin, publisher: Any,
                                                       manager: Client) -> None:
    url = admin_url("publisherkey_revoke", publisher.pk)
    page = manager.get(url).content.decode()
    assert "<strong>Marker</strong> (marker) will be deactivated" in page
    assert "cannot be trusted again" in page
    response = manager.post(url, follow=True)
    assert "Deactivated: marker." in response.content.decode()
    installed.refresh_from_db()
    publisher.refresh_from_db()
    assert installed.state == PluginState.INACTIVE and publisher.revoked_at is not None
    page = manager.post(admin_url("publisherkey_add"), {"name": "Again", "public_key": publisher.public_key})
    assert "cannot be trusted again" in page.content.decode()


def test_key_pages_render(publisher: Any, manager: Client) -> None:
    listing = manager.get(admin_url("publisherkey_changelist")).content.decode()
    assert "Trust a publisher key" in listing and "Revoke…" in listing and "trusted" in listing
    page = manager.get(admin_url("publisherkey_change", publisher.pk)).content.decode()
    assert "gn-revoke-key" in page
