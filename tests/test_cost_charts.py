"""Each plugin's cost, drawn (issue #20, item 3), through Django's test client: the plugin page, the
"Plugin costs" dashboard and the changelist, over a rollup filled by real hook calls (real wasmtime,
the marker plugin) in two flushes, and by the site's real requests. The figures in the SVGs must be
those ``stats.series`` reads; the added time per request, the plugin's hook time over the requests."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client

from gonext_plugins import bundle, lifecycle
from gonext_plugins.charts import byte_size, number
from gonext_plugins.hooks import apply_filters
from gonext_plugins.models import Plugin, PluginStatsBucket, SiteRequestBucket
from gonext_plugins.runtime.metrics import stats_for
from gonext_plugins.stats import added_ms, added_ms_per_request, request_series, rollup, series
from tests.test_admin import admin_url, client_for, make_user, signed_bundle

pytestmark = pytest.mark.django_db
SVG = "{http://www.w3.org/2000/svg}"
PAGE = 65536


@pytest.fixture(autouse=True)
def rollup_on(settings: Any) -> None:
    settings.GONEXT_PLUGINS = {**settings.GONEXT_PLUGINS,
                               "STATS_FLUSH_INTERVAL": 3600.0, "STATS_RETENTION_HOURS": 48}
    rollup.reset()


@pytest.fixture
def root(db: None) -> User:
    return make_user("root", [], superuser=True)


@pytest.fixture
def plugins(publisher: Any, root: User) -> dict[str, Plugin]:
    """The marker plugin active, and a copy of it installed but never activated."""
    marker = lifecycle.install(bundle.read(signed_bundle(publisher.private_key)), ["hooks.subscribe"], root,
                               activate=True).plugin
    idle = lifecycle.install(bundle.read(signed_bundle(publisher.private_key, slug="idle", name="Idle")),
                             ["hooks.subscribe"], root).plugin
    return {"marker": marker, "idle": idle}


def call_marker(times: int) -> None:
    for _ in range(times):
        assert "Marked by the gonext marker plugin" in apply_filters("the_content", "<p>post</p>")


def svgs(page: str, within: str) -> dict[str, ET.Element]:
    """The charts inside the element with id ``within``, by their ``data-metric``."""
    start = page.index(f'id="{within}"')
    found = {}
    for metric, svg in re.findall(r'data-metric="(\w+)">(<svg.*?</svg>)', page[start:]):
        found.setdefault(metric, ET.fromstring(svg))
    return found


def desc(svg: ET.Element) -> str:
    return "".join(svg.find(f"{SVG}desc").itertext())  # type: ignore[union-attr]


def latest(svg: ET.Element, kind: str = "gn-chart-latest") -> str:
    return next("".join(t.itertext()) for t in svg.iter(f"{SVG}text") if t.get("class") == kind)


def headline(svg: ET.Element) -> str:
    """A count chart's total over its window (bars are headed by it, not by the step under way)."""
    return latest(svg, "gn-chart-total")


def test_plugin_page_draws_what_the_rollup_holds(plugins: dict[str, Plugin], root: User) -> None:
    call_marker(7)
    assert rollup.flush()
    call_marker(5)
    rollup.count_job("marker", failed=False)  # what the worker counts after a delivery
    assert rollup.flush()  # a second flush: running totals, not doubled
    assert sum(PluginStatsBucket.objects.filter(plugin_slug="marker").values_list("calls", flat=True)) == 12
    peak = max(PluginStatsBucket.objects.values_list("memory_peak", flat=True))
    assert peak > 0 and peak % PAGE == 0  # the instance's linear memory, whole wasm pages

    client = client_for(root)
    page = client.get(admin_url("plugin_change", plugins["marker"].pk)).content.decode()
    now = datetime.now(tz=UTC)
    points = series("marker", now - timedelta(minutes=59), timedelta(minutes=1), until=now)
    assert "last hour · 1 min · all processes" in page and "last day · 1 h · all processes" in page
    hour = svgs(page, "gn-costs-hour")
    assert set(hour) == {"calls", "p50", "p99", "added", "fuel", "memory", "faults", "jobs"}
    busiest = max(p.calls for p in points)
    assert f"highest {number(busiest)}," in desc(hour["calls"]) and busiest >= 6  # 12 calls, 1 or 2 minutes
    assert len(list(hour["calls"].iter(f"{SVG}rect"))) == sum(1 for p in points if p.calls)
    assert f"highest {byte_size(peak)}," in desc(hour["memory"])
    assert "highest 1," in desc(hour["jobs"]) and "highest 0," in desc(hour["faults"])
    p99 = [p.p99_ms for p in points if p.p99_ms is not None]
    assert p99 and latest(hour["p99"]) == number(p99[-1], "ms")
    assert f"highest {number(max(p.fuel for p in points))}," in desc(hour["fuel"])
    day = svgs(page, "gn-costs-day")
    assert "highest 12," in desc(day["calls"]) or "highest 7," in desc(day["calls"])  # 1 or 2 hour steps
    assert headline(day["calls"]) == "12 total" and "total 12." in desc(day["calls"])
    assert headline(hour["calls"]) == "12 total" and headline(hour["jobs"]) == "1 total"


def test_added_time_per_request_is_hook_time_over_the_sites_requests(plugins: dict[str, Plugin],
                                                                     root: User) -> None:
    client = client_for(root)
    for _ in range(4):  # real requests of the site, each counted at request_finished
        assert client.get("/admin/login/").status_code in (200, 302)
    runtime = stats_for("marker")

    def hook_time() -> float:  # the runtime's cumulative figure: this process, since it started
        return sum(h.sum for kind, h in runtime.settled().calls.items() if kind != "job")

    before = hook_time()
    call_marker(10)
    hook_seconds = hook_time() - before
    assert rollup.flush()
    requests = sum(SiteRequestBucket.objects.values_list("requests", flat=True))
    assert requests == 4
    added = added_ms_per_request(["marker", "idle"], datetime.now(tz=UTC) - timedelta(hours=1))
    assert added["idle"] == 0.0
    assert added["marker"] == pytest.approx(hook_seconds * 1000 / 4, rel=0.05)

    listing = client.get(admin_url("plugin_changelist")).content.decode()
    assert "Added per request" in listing
    # the listing flushed before reading; its own request is counted at its end, so not in its figure
    shown = added_ms_per_request(["marker"], datetime.now(tz=UTC) - timedelta(hours=1))["marker"]
    assert shown is not None and f"+{shown:.3f} ms" in listing
    assert listing.count('class="gn-chart gn-chart-spark"') == 2  # one sparkline per plugin
    assert "Calls per minute of marker" in listing

    dashboard = client.get(admin_url("plugin_costs")).content.decode()
    order = re.findall(r'<tr data-slug="(\w+)"', dashboard)
    assert order == ["marker", "idle"]  # most added time first
    assert re.findall(r'<tr data-slug="(\w+)"', client.get(admin_url("plugin_costs") + "?o=added")
                      .content.decode()) == ["idle", "marker"]
    assert re.findall(r'<tr data-slug="(\w+)"', client.get(admin_url("plugin_costs") + "?o=name")
                      .content.decode()) == ["idle", "marker"]
    assert "last hour · 1 min" in dashboard and "all processes" in dashboard
    assert dashboard.count('data-metric="added"') == 2


def test_dashboard_needs_view_plugin(plugins: dict[str, Plugin]) -> None:
    assert client_for(make_user("nobody", [])).get(admin_url("plugin_costs")).status_code in (302, 403)
    staff = User.objects.create_user("staff", password="pw", is_staff=True)
    assert client_for(staff).get(admin_url("plugin_costs")).status_code == 403
    viewer = client_for(make_user("viewer", ["view_plugin"]))
    assert viewer.get(admin_url("plugin_costs")).status_code == 200


def test_without_the_rollup_the_pages_say_so(settings: Any, plugins: dict[str, Plugin], root: User) -> None:
    settings.GONEXT_PLUGINS = {**settings.GONEXT_PLUGINS, "STATS_FLUSH_INTERVAL": None}
    client = client_for(root)
    page = client.get(admin_url("plugin_change", plugins["marker"].pk)).content.decode()
    assert "The stats rollup is off" in page and "gn-chart" not in page
    assert 'id="gn-costs-off"' in client.get(admin_url("plugin_costs")).content.decode()
    assert not SiteRequestBucket.objects.exists()


def test_anonymous_is_sent_to_log_in(plugins: dict[str, Plugin]) -> None:
    assert Client().get(admin_url("plugin_costs")).status_code == 302  # to the login page


def test_two_processes_rows_peak_memory_is_a_maximum_and_requests_add_up() -> None:
    start = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
    for process, pages, calls, requests in (("a", 3, 10, 40), ("b", 5, 30, 60)):
        PluginStatsBucket.objects.create(plugin_slug="two", minute=start, process=process, calls=calls,
                                         time_sum=calls * 0.001, job_time_sum=0.002, memory_peak=pages * PAGE,
                                         histogram=[])
        SiteRequestBucket.objects.create(minute=start, process=process, requests=requests, time_sum=1.0)
    [point] = series("two", start, timedelta(minutes=1), until=start + timedelta(minutes=1))
    assert point.memory_peak == 5 * PAGE and point.calls == 40
    assert point.hook_ms == pytest.approx(40 - 4)  # 40 ms of guest time, 4 ms of it in jobs
    [site] = request_series(start, timedelta(minutes=1), until=start + timedelta(minutes=1))
    assert (site.requests, site.time_sum) == (100, 2.0)
    assert added_ms(point, site.requests) == pytest.approx(0.36)
    assert added_ms(point, 0) is None
