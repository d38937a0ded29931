"""Staged rollout of an upgrade: two versions of one plugin live at once. The same page shows the
new version's output to the cohort and the previous version's to everyone else; promote unloads the
previous one; a manual or automatic rollback returns everyone to it; each version runs with its own
capabilities. Real database, real wasmtime, WAT guests whose output names their version."""

from __future__ import annotations

import io
import json
import logging
from typing import Any

import pytest
import wasmtime
from django.core.management import CommandError, call_command
from django.test import Client

from gonext_plugins import bundle, hooks, lifecycle, rollout
from gonext_plugins.errors import ConsentRequired, RolloutError
from gonext_plugins.models import AuditEvent, Plugin, PluginFault, PluginRollout, PluginState
from gonext_plugins.registry import registry
from project.blog.models import Post

from .api.helpers import assert_error
from .conftest import GUESTS
from .test_admin import marker_manifest
from .test_rollout import TRAPPING, api_client, post, rollout_settings, staff_client, visitor

pytestmark = pytest.mark.django_db
__all__ = ["post", "rollout_settings"]  # fixtures used by name

MARKER = "Marked by the gonext marker plugin"


def versioned_guest(version: str) -> bytes:
    """The marker guest (tests/guests/marker_guest.wat) with its marker naming ``version``: the same
    byte length, so the guest's offsets hold."""
    text = f"marker version {version}".ljust(len(MARKER), ".")
    assert len(text) == len(MARKER)
    return wasmtime.wat2wasm((GUESTS / "marker_guest.wat").read_text().replace(MARKER, text))


def said_by(version: str) -> str:
    return f"marker version {version}"


def signed(publisher: Any, version: str, wasm: bytes | None = None, **fields: Any) -> bundle.Bundle:
    wasm = wasm if wasm is not None else versioned_guest(version)
    raw = bundle.pack(marker_manifest(version, **fields), wasm)
    return bundle.read(bundle.sign(raw, publisher.private_key))


def running_a(publisher: Any, **fields: Any) -> Plugin:
    """Version 1.0.0 installed and active for everyone."""
    return lifecycle.install(signed(publisher, "1.0.0", **fields), ["hooks.subscribe"], "tests",
                             activate=True).plugin


def page(client: Client, post: Post) -> str:
    response = client.get(f"/posts/{post.slug}/")
    assert response.status_code == 200
    return response.content.decode()


def in_and_out(percent: int) -> tuple[Client, Client]:
    """A visitor inside a percent rollout of marker and one outside it."""
    rule = rollout.Rule("marker", "percent", percent)
    inside = next(n for n in range(1000) if rollout.includes(rule, is_staff=False, visitor=f"{n:032x}"))
    outside = next(n for n in range(1000) if not rollout.includes(rule, is_staff=False, visitor=f"{n:032x}"))
    return visitor(inside), visitor(outside)


def test_the_cohort_sees_the_new_version_and_everyone_else_the_previous(publisher: Any, post: Post) -> None:
    running_a(publisher)
    result = lifecycle.rollout.start_upgrade("marker", signed(publisher, "1.1.0"), [], "tests",
                                             mode="percent", percent=30)
    assert result.version is not None and result.version.version == "1.1.0"
    plugin = Plugin.objects.get(slug="marker")
    assert plugin.state == PluginState.ACTIVE and plugin.active_version.version == "1.1.0"
    row = PluginRollout.objects.get()
    assert (row.version.version, row.previous_version.version) == ("1.1.0", "1.0.0")
    inside, outside = in_and_out(30)
    for _ in range(2):  # sticky: the same side every time
        html_in, html_out = page(inside, post), page(outside, post)
        assert said_by("1.1.0") in html_in and said_by("1.0.0") not in html_in
        assert said_by("1.0.0") in html_out and said_by("1.1.0") not in html_out
    assert registry.get("marker").version == "1.1.0" and registry.previous("marker").version == "1.0.0"
    # Outside requests (jobs, commands) the active version runs, alone.
    value = hooks.apply_filters("the_content", "x", post)
    assert said_by("1.1.0") in value and said_by("1.0.0") not in value
    start = AuditEvent.objects.get(action="rollout_start").details
    assert start["upgrade"] is True and (start["before"], start["after"]) == ("1.0.0", "1.1.0")
    state = rollout.state("marker")
    assert state is not None and state["upgrade"] and state["previous_version"] == "1.0.0"
    assert state["figures"]["fault_basis"] == "requests"


def test_staff_only_upgrade_and_promote_unloads_the_previous(publisher: Any, post: Post) -> None:
    running_a(publisher)
    lifecycle.rollout.start_upgrade("marker", signed(publisher, "1.1.0"), [], "tests", mode="staff")
    assert said_by("1.1.0") in page(staff_client(), post)
    assert said_by("1.0.0") in page(Client(), post)
    previous = registry.previous("marker")
    assert previous is not None
    lifecycle.rollout.promote("marker", "tests")
    assert said_by("1.1.0") in page(Client(), post)
    assert registry.previous("marker") is None
    assert "hook_proxies" not in previous.extras  # its hooks left the bus
    promote = AuditEvent.objects.get(action="rollout_promote").details
    assert promote["previous_version"] == "1.0.0"


def test_manual_rollback_returns_everyone_to_the_previous_version(publisher: Any, post: Post) -> None:
    running_a(publisher)
    lifecycle.rollout.start_upgrade("marker", signed(publisher, "1.1.0"), [], "tests", mode="staff")
    page(Client(), post)
    previous = registry.previous("marker")
    lifecycle.rollout.roll_back("marker", "admin-x", reason="layout broke")
    plugin = Plugin.objects.get(slug="marker")
    assert plugin.state == PluginState.ACTIVE and plugin.active_version.version == "1.0.0"
    staff = staff_client()
    assert said_by("1.0.0") in page(staff, post) and said_by("1.0.0") in page(Client(), post)
    assert registry.get("marker") is previous  # the loaded previous version took over, no reload
    assert registry.previous("marker") is None
    actions = list(AuditEvent.objects.filter(plugin_slug="marker").values_list("action", flat=True)
                   .order_by("id"))
    assert actions[-4:] == ["upgrade", "rollout_start", "rollout_rollback", "rollback"]
    back = AuditEvent.objects.get(action="rollout_rollback")
    assert back.details["automatic"] is False and back.details["previous_version"] == "1.0.0"
    # 1.1.0 stays installed: it can be rolled out again by version.
    lifecycle.rollout.start("marker", "tests", mode="staff", version="1.1.0")
    assert said_by("1.1.0") in page(staff, post) and said_by("1.0.0") in page(Client(), post)


def test_a_faulting_new_version_is_rolled_back_to_the_previous(publisher: Any, post: Post,
                                                                caplog: Any) -> None:
    running_a(publisher)
    lifecycle.rollout.start_upgrade("marker", signed(publisher, "1.1.0", wasmtime.wat2wasm(TRAPPING)), [],
                                    "tests", mode="percent", percent=50)
    caplog.set_level(logging.WARNING, "gonext_plugins")
    for n in range(80):
        assert visitor(n).get(f"/posts/{post.slug}/").status_code == 200
        if not PluginRollout.objects.exists():
            break
    plugin = Plugin.objects.get(slug="marker")
    assert plugin.state == PluginState.ACTIVE and plugin.active_version.version == "1.0.0"
    event = AuditEvent.objects.get(action="rollout_rollback")
    assert event.actor_label == rollout.SYSTEM_ACTOR and event.details["automatic"] is True
    found = event.details["figures"]
    assert found["fault_basis"] == "requests" and found["fault_rate"] > 0.5
    assert found["previous_faults"] == 0 and found["previous_fault_rate"] == 0.0
    assert "fault rate" in event.details["reason"] and "requests" in event.details["reason"]
    # Faults and their log lines name the version that faulted.
    assert set(PluginFault.objects.values_list("version", flat=True)) == {"1.1.0"}
    assert "version 1.1.0" in caplog.text and "version 1.0.0" not in caplog.text
    assert said_by("1.0.0") in page(visitor(1), post) and said_by("1.0.0") in page(visitor(2), post)
    assert rollout.watch() == []


def test_quarantine_of_the_version_rolled_out_returns_everyone_to_the_previous(
        publisher: Any, post: Post, settings: Any) -> None:
    """Quarantine reached before the watch (which here never judges: too few requests) rolls the
    upgrade back rather than deactivating the plugin for the visitors the previous version served."""
    settings.GONEXT_PLUGINS = {**settings.GONEXT_PLUGINS, "QUARANTINE_FAULTS": 3,
                               "ROLLOUT_MIN_REQUESTS": 10_000}
    running_a(publisher)
    lifecycle.rollout.start_upgrade("marker", signed(publisher, "1.1.0", wasmtime.wat2wasm(TRAPPING)), [],
                                    "tests", mode="staff")
    staff = staff_client()
    for _ in range(3):
        assert staff.get(f"/posts/{post.slug}/").status_code == 200
    plugin = Plugin.objects.get(slug="marker")
    assert plugin.state == PluginState.ACTIVE and plugin.active_version.version == "1.0.0"
    assert not PluginRollout.objects.exists()
    event = AuditEvent.objects.get(action="rollout_rollback")
    assert event.actor_label == "system: quarantine"
    assert event.details["reason"].startswith("quarantine: 3 faults")
    assert not AuditEvent.objects.filter(action="quarantine").exists()
    assert said_by("1.0.0") in page(staff, post) and said_by("1.0.0") in page(visitor(1), post)


def test_quarantine_of_the_previous_version_still_quarantines(publisher: Any, post: Post,
                                                                settings: Any) -> None:
    settings.GONEXT_PLUGINS = {**settings.GONEXT_PLUGINS, "QUARANTINE_FAULTS": 2}
    running_a(publisher)
    lifecycle.rollout.start_upgrade("marker", signed(publisher, "1.1.0"), [], "tests", mode="staff")
    for _ in range(2):
        lifecycle.record_fault("marker", "trap", "the previous version trapped", version="1.0.0")
    assert Plugin.objects.get(slug="marker").state == PluginState.QUARANTINED
    assert AuditEvent.objects.filter(action="quarantine").exists()


def test_each_version_runs_with_its_own_capabilities(publisher: Any, post: Post) -> None:
    running_a(publisher, optionalCapabilities=[])  # 1.0.0 does not ask for kv
    # 1.1.0 asks for kv (optional): granted with the upgrade, for 1.1.0 alone.
    upgraded = signed(publisher, "1.1.0", capabilities=["hooks.subscribe", "kv"], optionalCapabilities=[])
    with pytest.raises(ConsentRequired):
        lifecycle.rollout.start_upgrade("marker", upgraded, [], "tests", mode="staff")
    assert not PluginRollout.objects.exists()
    assert Plugin.objects.get(slug="marker").active_version.version == "1.0.0"
    lifecycle.rollout.start_upgrade("marker", upgraded, ["kv"], "tests", mode="staff")
    page(Client(), post)
    assert "kv" in registry.get("marker").capabilities
    assert "kv" not in registry.previous("marker").capabilities


def test_refusals_are_typed(publisher: Any) -> None:
    running_a(publisher)
    with pytest.raises(RolloutError, match="already"):
        lifecycle.rollout.start_upgrade("marker", signed(publisher, "1.0.0"), [], "tests", mode="staff")
    lifecycle.rollout.start_upgrade("marker", signed(publisher, "1.1.0"), [], "tests", mode="staff")
    with pytest.raises(RolloutError, match="another rollout"):
        lifecycle.rollout.start_upgrade("marker", signed(publisher, "1.2.0"), [], "tests", mode="staff")
    lifecycle.rollout.roll_back("marker", "tests")
    with pytest.raises(RolloutError, match="older"):
        lifecycle.rollout.start("marker", "tests", mode="staff", version="0.9.0")
    with pytest.raises(RolloutError, match="running already"):
        lifecycle.rollout.start("marker", "tests", mode="staff", version="1.0.0")
    with pytest.raises(RolloutError, match="not installed"):
        lifecycle.rollout.start("marker", "tests", mode="staff", version="2.0.0")
    lifecycle.deactivate("marker", "tests")
    with pytest.raises(RolloutError, match="not active"):
        lifecycle.rollout.start("marker", "tests", mode="staff", version="1.1.0")


def test_api_upgrade_with_rollout_and_rollout_by_version(publisher: Any, post: Post) -> None:
    running_a(publisher)
    api = api_client()
    raw = bundle.sign(bundle.pack(marker_manifest("1.1.0"), versioned_guest("1.1.0")), publisher.private_key)
    upload = io.BytesIO(raw)
    upload.name = "marker.gnplugin"
    response = api.post("/api/plugins/marker/upgrade/", {"bundle": upload, "rollout": "percent",
                                                         "rollout_percent": 20}, format="multipart")
    assert response.status_code == 200, response.content
    state = api.get("/api/plugins/marker/rollout/").json()["rollout"]
    assert state["upgrade"] and (state["version"], state["previous_version"]) == ("1.1.0", "1.0.0")
    assert state["percent"] == 20
    back = api.post("/api/plugins/marker/rollout/rollback/", {"reason": "no"}, format="json")
    assert back.status_code == 200 and back.json()["rollout"] is None
    assert Plugin.objects.get(slug="marker").active_version.version == "1.0.0"
    again = api.post("/api/plugins/marker/rollout/", {"mode": "staff", "version": "1.1.0"}, format="json")
    assert again.status_code == 200, again.content
    assert again.json()["rollout"]["previous_version"] == "1.0.0"
    older = {"mode": "staff", "version": "0.1.0"}
    assert_error(api.post("/api/plugins/marker/rollout/", older, format="json"), 409, "rollout_error")
    upload = io.BytesIO(raw)
    upload.name = "marker.gnplugin"
    assert_error(api.post("/api/plugins/marker/upgrade/", {"bundle": upload, "rollout": "percent",
                                                           "rollout_percent": 100}, format="multipart"), 400)


def test_cli_upgrade_with_rollout_and_status(publisher: Any, post: Post, tmp_path: Any) -> None:
    running_a(publisher)
    path = tmp_path / "marker-1.1.0.gnplugin"
    path.write_bytes(bundle.sign(bundle.pack(marker_manifest("1.1.0"), versioned_guest("1.1.0")),
                                 publisher.private_key))
    out = io.StringIO()
    call_command("plugin", "upgrade", "marker", str(path), "--rollout-percent", "10", stdout=out)
    assert "1.1.0" in out.getvalue()
    status = io.StringIO()
    call_command("plugin", "rollout", "marker", "--status", stdout=status)
    assert "upgrade 1.0.0 -> 1.1.0" in status.getvalue() and "10% of visitors" in status.getvalue()
    data = io.StringIO()
    call_command("plugin", "rollout", "marker", "--status", "--json", stdout=data)
    assert json.loads(data.getvalue())["rollout"]["previous_version"] == "1.0.0"
    rolled = io.StringIO()
    call_command("plugin", "rollout", "marker", "--rollback", stdout=rolled)
    assert "back to 1.0.0" in rolled.getvalue()
    with pytest.raises(CommandError, match="rollout_error"):
        call_command("plugin", "rollout", "marker", "--staff", "--version", "1.0.0", stdout=io.StringIO())
    call_command("plugin", "rollout", "marker", "--staff", "--version", "1.1.0", stdout=io.StringIO())
    assert PluginRollout.objects.get().previous_version.version == "1.0.0"
