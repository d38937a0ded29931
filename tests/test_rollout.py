"""Staged rollout: the cohort decision (sticky visitor hash, staff only), real requests through the
demo blog with real guests, automatic rollback on faults and on added latency, promote, the audit
rows, and refusals."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
import wasmtime
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.db.models import Sum
from django.test import Client
from rest_framework.test import APIClient

from gonext_plugins import bundle, hooks, lifecycle, rollout
from gonext_plugins.checks import ROLLOUT_MIDDLEWARE, check_rollout_middleware
from gonext_plugins.errors import InvalidRollout, RolloutError
from gonext_plugins.models import AuditEvent, Plugin, PluginRollout, PluginState, RolloutBucket
from gonext_plugins.stats import rollup
from project.blog.models import Post

from .api.helpers import assert_error
from .conftest import guest_wasm
from .test_admin import marker_manifest

pytestmark = pytest.mark.django_db

MARKER = "Marked by the gonext marker plugin"

# A filter that traps on every call.
TRAPPING = """(module (memory (export "memory") 1)
  (func (export "gn_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "gn_free") (param i32 i32))
  (func (export "gn_handle_hook") (param i32 i32 i32 i32) (result i64) unreachable))"""

# A filter that spins 5 million loop steps (~40 million fuel, under the site's 50 million), then
# answers "no change".
SPINNING = """(module (memory (export "memory") 1)
  (func (export "gn_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "gn_free") (param i32 i32))
  (func (export "gn_handle_hook") (param i32 i32 i32 i32) (result i64) (local $i i32)
    (loop $l (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $l (i32.lt_u (local.get $i) (i32.const 5000000))))
    (i64.const 0)))"""


@pytest.fixture(autouse=True)
def rollout_settings(settings: Any) -> None:
    # Added time is wall-clock: only the test about it sets a threshold a loaded machine could reach
    # by noise alone (with a guest that adds far more), so no other test is rolled back mid-way.
    settings.GONEXT_PLUGINS = {**settings.GONEXT_PLUGINS,
                               "ROLLOUT_CHECK_INTERVAL": 0, "ROLLOUT_MIN_REQUESTS": 4,
                               "ROLLOUT_MAX_FAULT_RATE": 0.5, "ROLLOUT_MAX_ADDED_MS": 60_000.0,
                               "STATS_FLUSH_INTERVAL": 3600.0, "QUARANTINE_FAULTS": 1000,
                               "SYNC_INTERVAL": 0.0}
    rollup.reset()
    rollout.recorder.reset()
    rollout.forget_rules()


@pytest.fixture
def post() -> Post:
    return Post.objects.create(title="Hello", slug="hello", body="First post.")


def install(publisher: Any, wasm: bytes | None = None, **limits: Any) -> Plugin:
    """The marker plugin (or another guest under its manifest), installed and inactive."""
    manifest = marker_manifest(**({"limits": limits} if limits else {}))
    raw = bundle.sign(bundle.pack(manifest, wasm if wasm is not None else guest_wasm("marker_guest")),
                      publisher.private_key)
    return lifecycle.install(bundle.read(raw), ["hooks.subscribe"], "tests").plugin


def visitor(n: int) -> Client:
    """An anonymous visitor with a known first-party cookie."""
    client = Client()
    client.cookies[rollout.COOKIE] = f"{n:032x}"
    return client


def staff_client() -> Client:
    client = Client()
    client.force_login(User.objects.create_user("staffer", password="pw", is_staff=True))
    return client


def test_percent_slots_are_sticky_and_about_the_share_asked_for() -> None:
    rule = rollout.Rule("marker", "percent", 20)
    ids = [f"{n:032x}" for n in range(10_000)]
    inside = [v for v in ids if rollout.includes(rule, is_staff=False, visitor=v)]
    assert 1_850 <= len(inside) <= 2_150  # 20% of 10k, within ~3.7 standard deviations
    assert all(rollout.includes(rule, is_staff=False, visitor=v) for v in inside)  # sticky
    # Growing the share keeps everyone already in.
    wider = rollout.Rule("marker", "percent", 50)
    assert all(rollout.includes(wider, is_staff=False, visitor=v) for v in inside)
    # Another plugin's cohort is drawn independently.
    other = rollout.Rule("other", "percent", 20)
    both = sum(rollout.includes(other, is_staff=False, visitor=v) for v in inside)
    assert 250 <= both <= 550  # ~20% of the 2000, not all of them


def test_staff_only_rollout_shows_the_plugin_to_staff_alone(publisher: Any, post: Post) -> None:
    install(publisher)
    lifecycle.rollout.start("marker", "tests", mode="staff")
    url = f"/posts/{post.slug}/"
    assert MARKER in staff_client().get(url).content.decode()
    anonymous = Client().get(url)
    assert anonymous.status_code == 200 and MARKER not in anonymous.content.decode()
    assert rollout.COOKIE not in anonymous.cookies  # staff mode needs no visitor cookie
    row = RolloutBucket.objects.get(plugin_slug="marker")
    assert (row.with_requests, row.without_requests) == (1, 1)
    # Outside requests (a job, a command) nothing is excluded: the plugin runs.
    assert MARKER in hooks.apply_filters("the_content", "x", post)


def test_percent_rollout_is_sticky_per_visitor_cookie(publisher: Any, post: Post) -> None:
    install(publisher)
    lifecycle.rollout.start("marker", "tests", mode="percent", percent=50)
    url = f"/posts/{post.slug}/"
    seen = {}
    for n in range(12):
        client = visitor(n)
        first = MARKER in client.get(url).content.decode()
        assert first == (MARKER in client.get(url).content.decode())  # the same side every time
        assert first == rollout.includes(rollout.Rule("marker", "percent", 50), is_staff=False,
                                         visitor=f"{n:032x}")
        seen[n] = first
    assert any(seen.values()) and not all(seen.values())
    # A new visitor gets a cookie that keeps them on their side.
    fresh = Client()
    response = fresh.get(url)
    cookie = response.cookies[rollout.COOKIE]
    assert rollout.valid_visitor(cookie.value) and cookie["httponly"]
    side = MARKER in response.content.decode()
    assert all((MARKER in fresh.get(url).content.decode()) == side for _ in range(3))


def test_a_faulting_plugin_is_rolled_back_automatically(publisher: Any, post: Post) -> None:
    install(publisher, wasmtime.wat2wasm(TRAPPING))
    lifecycle.rollout.start("marker", "tests", mode="percent", percent=50)
    url = f"/posts/{post.slug}/"
    for n in range(60):
        assert visitor(n).get(url).status_code == 200  # a trap never breaks the page
        if not PluginRollout.objects.exists():
            break
    plugin = Plugin.objects.get(slug="marker")
    assert plugin.state == PluginState.INACTIVE and "fault rate" in plugin.state_reason
    event = AuditEvent.objects.get(action="rollout_rollback")
    assert event.actor_label == rollout.SYSTEM_ACTOR and event.details["automatic"] is True
    found = event.details["figures"]
    assert found["with_requests"] >= 4 and found["faults"] >= 4 and found["fault_rate"] > 0.5
    assert found["max_fault_rate"] == 0.5
    assert list(AuditEvent.objects.filter(plugin_slug="marker").values_list("action", flat=True)
                .order_by("id")) == ["install", "activate", "rollout_start", "rollout_rollback", "deactivate"]
    # Once rolled back the plugin is off for everyone, and judging again does nothing.
    assert rollout.watch() == []
    assert MARKER not in visitor(1).get(url).content.decode()


def test_a_plugin_that_slows_pages_is_rolled_back(publisher: Any, post: Post, settings: Any) -> None:
    settings.GONEXT_PLUGINS = {**settings.GONEXT_PLUGINS, "ROLLOUT_MAX_ADDED_MS": 1.0}
    install(publisher, wasmtime.wat2wasm(SPINNING))
    lifecycle.rollout.start("marker", "tests", mode="staff")
    url = f"/posts/{post.slug}/"
    staff, anonymous = staff_client(), Client()
    for _ in range(10):
        anonymous.get(url)
        staff.get(url)
        if not PluginRollout.objects.exists():
            break
    plugin = Plugin.objects.get(slug="marker")
    assert plugin.state == PluginState.INACTIVE and "longer" in plugin.state_reason, plugin.state_reason
    found = AuditEvent.objects.get(action="rollout_rollback").details["figures"]
    assert found["added_ms"] > 1.0 and found["faults"] == 0 and found["calls"] >= 4
    assert found["with_requests"] >= 4 and found["without_requests"] >= 4


def test_promote_runs_it_for_everyone_and_is_audited(publisher: Any, post: Post) -> None:
    install(publisher)
    lifecycle.rollout.start("marker", "tests", mode="staff")
    result = lifecycle.rollout.start("marker", "tests", mode="percent", percent=10)  # change the cohort
    assert result.changed and PluginRollout.objects.get().percent == 10
    assert not lifecycle.rollout.start("marker", "tests", mode="percent", percent=10).changed
    lifecycle.rollout.promote("marker", "admin-x")
    assert not PluginRollout.objects.exists()
    assert MARKER in Client().get(f"/posts/{post.slug}/").content.decode()
    promote = AuditEvent.objects.get(action="rollout_promote")
    ten = {"mode": "percent", "percent": 10}
    assert promote.actor_label == "admin-x" and promote.details["before"] == ten
    assert AuditEvent.objects.get(action="rollout_change").details["after"] == ten


def test_promote_clicked_twice_in_the_admin_says_it_is_done_once(publisher: Any) -> None:
    """A double click (or a second tab) sends promote again after the first one ended the rollout:
    the plugin runs for everyone, as asked, so that is what the page says, not an error beside the
    success."""
    plugin = install(publisher)
    lifecycle.rollout.start("marker", "tests", mode="staff")
    client = Client()
    client.force_login(User.objects.create_superuser("promoter", password="pw"))
    url = f"/admin/gonext_plugins/plugin/{plugin.pk}/rollout/"
    first, again = (client.post(url, {"action": "promote"}, follow=True).content.decode() for _ in range(2))
    assert "Marker now runs for everyone." in first
    assert "Marker already runs for everyone: nothing to promote." in again
    assert "No rollout change" not in again and "now runs for everyone" not in again
    assert AuditEvent.objects.filter(action="rollout_promote").count() == 1


def test_the_figures_shown_include_what_this_process_counted_so_far(publisher: Any, post: Post,
                                                                    settings: Any) -> None:
    """The page showing a rollout's figures is a request of a process that may hold the latest of
    them: they go in before they are read, not at the process's next due flush (30 s by default,
    and only at a request's end: an admin saw 1 and 0 after 80 requests)."""
    settings.GONEXT_PLUGINS = {**settings.GONEXT_PLUGINS, "ROLLOUT_CHECK_INTERVAL": 3600}
    install(publisher)
    lifecycle.rollout.start("marker", "tests", mode="percent", percent=50)
    rollout.recorder.flush()  # the interval starts now: nothing below is due
    for n in range(12):
        visitor(n).get(f"/posts/{post.slug}/")
    assert RolloutBucket.objects.aggregate(n=Sum("with_requests"))["n"] in (0, None)  # not flushed yet
    found = rollout.state("marker")["figures"]
    assert found["with_requests"] + found["without_requests"] == 12


def test_the_plugin_list_says_a_plugin_is_in_rollout(publisher: Any) -> None:
    """"Active" alone read as live for everyone while half the visitors did not run it."""
    install(publisher)
    client = Client()
    client.force_login(User.objects.create_superuser("lister", password="pw"))
    listing = client.get("/admin/gonext_plugins/plugin/").content.decode()
    assert "rollout:" not in listing
    lifecycle.rollout.start("marker", "tests", mode="percent", percent=25)
    listing = client.get("/admin/gonext_plugins/plugin/").content.decode()
    assert "rollout: 25% of visitors" in listing


def test_refusals_are_typed(publisher: Any) -> None:
    install(publisher)
    with pytest.raises(InvalidRollout) as bad:
        lifecycle.rollout.start("marker", "tests", mode="percent", percent=100)
    assert bad.value.code == "invalid_rollout"
    for mode, percent in (("everyone", None), ("staff", 5), ("percent", None), ("percent", 0)):
        with pytest.raises(InvalidRollout):
            lifecycle.rollout.start("marker", "tests", mode=mode, percent=percent)
    with pytest.raises(RolloutError) as none:
        lifecycle.rollout.promote("marker", "tests")
    assert none.value.code == "rollout_error"
    lifecycle.activate("marker", "tests")
    with pytest.raises(RolloutError, match="already active"):
        lifecycle.rollout.start("marker", "tests", mode="staff")
    assert not PluginRollout.objects.exists()


def test_manual_rollback_deactivates_and_deactivation_ends_the_rollout(publisher: Any) -> None:
    install(publisher)
    lifecycle.rollout.start("marker", "tests", mode="staff")
    lifecycle.rollout.roll_back("marker", "tests", reason="looked wrong")
    plugin = Plugin.objects.get(slug="marker")
    assert plugin.state == PluginState.INACTIVE and plugin.state_reason == "looked wrong"
    assert AuditEvent.objects.get(action="rollout_rollback").details["automatic"] is False
    lifecycle.rollout.start("marker", "tests", mode="staff")
    lifecycle.deactivate("marker", "tests")
    assert not PluginRollout.objects.exists()


# --- the API --------------------------------------------------------------------------------------


def api_client() -> APIClient:
    client = APIClient()
    client.force_authenticate(User.objects.create_superuser("root", "root@example.com", "pw"))
    return client


def test_api_starts_reads_promotes_and_rolls_back(publisher: Any, post: Post) -> None:
    install(publisher)
    api = api_client()
    empty = api.get("/api/plugins/marker/rollout/")
    assert empty.status_code == 200
    assert empty.json() == {"slug": "marker", "state": "inactive", "rollout": None}
    started = api.post("/api/plugins/marker/rollout/", {"mode": "percent", "percent": 30}, format="json")
    assert started.status_code == 200, started.content
    body = started.json()
    assert body["state"] == "active" and body["rollout"]["mode"] == "percent"
    assert body["rollout"]["percent"] == 30 and body["rollout"]["version"] == "1.0.0"
    assert body["rollout"]["started_by"] == "root"
    for n in range(6):
        visitor(n).get(f"/posts/{post.slug}/")
    figures = api.get("/api/plugins/marker/rollout/").json()["rollout"]["figures"]
    assert figures["with_requests"] + figures["without_requests"] == 6
    assert figures["max_added_ms"] == 60_000.0 and figures["min_requests"] == 4
    assert_error(api.post("/api/plugins/marker/rollout/", {"mode": "percent", "percent": 100}, format="json"),
                 400)
    assert_error(api.post("/api/plugins/marker/rollout/", {"mode": "staff", "extra": 1}, format="json"), 400)
    promoted = api.post("/api/plugins/marker/rollout/promote/")
    assert promoted.status_code == 200 and promoted.json()["rollout"] is None
    assert_error(api.post("/api/plugins/marker/rollout/promote/"), 409, "rollout_error")
    assert_error(api.post("/api/plugins/marker/rollout/", {"mode": "staff"}, format="json"), 409,
                 "rollout_error")
    assert_error(api.post("/api/plugins/nope/rollout/", {"mode": "staff"}, format="json"), 404)
    api.post("/api/plugins/marker/deactivate/")
    api.post("/api/plugins/marker/rollout/", {"mode": "staff"}, format="json")
    back = api.post("/api/plugins/marker/rollout/rollback/", {"reason": "not today"}, format="json")
    assert back.status_code == 200 and back.json() == {"slug": "marker", "state": "inactive", "rollout": None}
    assert AuditEvent.objects.get(action="rollout_rollback").details["reason"] == "not today"


# --- the CLI --------------------------------------------------------------------------------------


def cli(*args: str) -> str:
    out = io.StringIO()
    call_command("plugin", "rollout", *args, stdout=out)
    return out.getvalue()


def test_cli_rollout_status_promote_and_refusals(publisher: Any, post: Post) -> None:
    install(publisher)
    assert "not in a rollout (inactive)" in cli("marker", "--status")
    assert "rolling out: marker for 25% of visitors" in cli("marker", "--percent", "25")
    for n in range(5):
        visitor(n).get(f"/posts/{post.slug}/")
    text = cli("marker", "--status")
    assert "rolling out to 25% of visitors" in text and "judged after 4 requests per cohort" in text
    data = json.loads(cli("marker", "--status", "--json"))
    figures = data["rollout"]["figures"]
    assert data["state"] == "active" and figures["with_requests"] + figures["without_requests"] == 5
    assert AuditEvent.objects.get(action="rollout_start").actor_label.startswith("cli:")
    with pytest.raises(CommandError, match="invalid_rollout"):
        cli("marker", "--percent", "0")
    assert "promoted" in cli("marker", "--promote")
    with pytest.raises(CommandError, match="rollout_error: the plugin is not in a rollout"):
        cli("marker", "--rollback")
    with pytest.raises(CommandError):
        cli("marker", "--staff", "--promote")  # one action at a time (a usage error)


def test_check_w014_when_a_rollout_runs_without_the_middleware(publisher: Any, settings: Any) -> None:
    install(publisher)
    settings.MIDDLEWARE = [m for m in settings.MIDDLEWARE if m != ROLLOUT_MIDDLEWARE]
    assert check_rollout_middleware() == []  # no rollout: nothing to say
    lifecycle.rollout.start("marker", "tests", mode="staff")
    assert [(m.id, m.obj) for m in check_rollout_middleware()] == [("gonext_plugins.W015", "marker")]
    settings.MIDDLEWARE = [*settings.MIDDLEWARE, ROLLOUT_MIDDLEWARE]
    assert check_rollout_middleware() == []
