"""Each plugin's cost, drawn, in a real browser (issue #20, item 3): Debian's Chromium, headless,
driven by Playwright against pytest-django's live server. The marker plugin is called for real (its
figures flushed to the stats rollup, requests counted by the live server), then the changelist (a
sparkline and the added time per request), the plugin page (its charts for the last hour and day)
and the "Plugin costs" dashboard are opened under the admin's strict Content-Security-Policy: the
SVGs must be rendered (a real size on screen, bars drawn), with no console error and no CSP
violation. Screenshots go to ``test-artifacts/costs/``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gonext_plugins import bundle, lifecycle
from gonext_plugins.hooks import apply_filters
from gonext_plugins.stats import rollup
from tests.browser import chromium
from tests.test_admin import signed_bundle

# Playwright's sync API runs an event loop in this thread; the ORM calls the test makes between
# browser steps are ordinary synchronous ones.
pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
browser = chromium.browser  # the module-scoped fixture every browser test shares

PASSWORD = "correct horse battery staple"


@pytest.fixture
def page(browser: Any, live_server: Any, settings: Any) -> Iterator[Any]:
    settings.GONEXT_PLUGINS = {**settings.GONEXT_PLUGINS,
                               "STATS_FLUSH_INTERVAL": 3600.0, "STATS_RETENTION_HOURS": 48}
    rollup.reset()
    context = browser.new_context(viewport={"width": 1280, "height": 900}, base_url=live_server.url)
    context.set_default_timeout(15_000)
    context.add_init_script(chromium.WATCH_CSP)
    tab = context.new_page()
    yield tab
    context.close()


def no_csp_violations(page: Any) -> None:
    assert chromium.csp_violations(page) == []


def test_cost_charts_render_under_the_strict_csp(page: Any, publisher: Any, django_user_model: Any,
                                                 artifacts_dir: Path) -> None:
    from playwright.sync_api import expect

    shots = chromium.fresh_shots(artifacts_dir, "costs")
    console = chromium.capture_console(page)

    root = django_user_model.objects.create_superuser("admin", "admin@example.com", PASSWORD)
    marker = lifecycle.install(bundle.read(signed_bundle(publisher.private_key)), ["hooks.subscribe"], root,
                               activate=True).plugin
    lifecycle.install(bundle.read(signed_bundle(publisher.private_key, slug="idle", name="Idle")),
                      ["hooks.subscribe"], root)
    for _ in range(40):
        apply_filters("the_content", "<p>post</p>")
    rollup.count_job("marker", failed=False)
    assert rollup.flush()

    page.goto("/admin/login/?next=/admin/gonext_plugins/plugin/")
    page.fill("#id_username", "admin")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    expect(page.locator("#result_list")).to_have_count(1)
    response = page.goto("/admin/gonext_plugins/plugin/")
    assert "script-src" in response.headers.get("content-security-policy", "")

    # the changelist: a sparkline per plugin, the added time of the active one
    sparks = page.locator("#result_list svg.gn-chart-spark")
    expect(sparks).to_have_count(2)
    box = sparks.first.bounding_box()
    assert box and box["width"] >= 90 and box["height"] >= 20
    expect(page.locator("#result_list .gn-added")).to_have_count(1)
    expect(page.locator("#result_list .gn-added")).to_contain_text(" ms")
    page.screenshot(path=str(shots / "01-changelist.png"), full_page=True)
    no_csp_violations(page)  # the list is reset by each page load: checked on every page

    # the plugin page: both windows, every chart drawn, the calls bars present
    page.goto(f"/admin/gonext_plugins/plugin/{marker.pk}/change/")
    for window in ("hour", "day"):
        expect(page.locator(f"#gn-costs-{window} svg.gn-chart")).to_have_count(8)
    bars = page.locator('#gn-costs-hour figure[data-metric="calls"] rect.gn-chart-bar')
    assert bars.count() >= 1 and (bars.first.bounding_box() or {}).get("height", 0) > 1
    # a count is headed by its window's total, not by the minute or hour under way (often still 0)
    for window in ("hour", "day"):
        total = page.locator(f'#gn-costs-{window} figure[data-metric="calls"] .gn-chart-total')
        expect(total).to_have_text("40 total")
    memory = page.locator('#gn-costs-hour figure[data-metric="memory"] .gn-chart-latest')
    expect(memory).to_contain_text("KiB")
    colour = page.locator('#gn-costs-hour figure[data-metric="calls"] rect.gn-chart-bar').first.evaluate(
        "el => getComputedStyle(el).fill")
    assert colour not in ("", "none", "rgb(0, 0, 0)")  # admin.css gave it the admin's link colour
    page.locator("#gn-costs").screenshot(path=str(shots / "02-plugin-page-charts.png"))
    page.screenshot(path=str(shots / "03-plugin-page.png"), full_page=True)
    no_csp_violations(page)

    # the dashboard: every plugin, the one adding the most time first
    page.goto("/admin/gonext_plugins/plugin/costs/")
    assert page.locator("#gn-costs-table tbody tr").evaluate_all(
        "rows => rows.map(r => r.dataset.slug)") == ["marker", "idle"]
    expect(page.locator("#gn-costs-table svg.gn-chart")).to_have_count(16)
    page.click("#gn-sort-name")
    assert page.locator("#gn-costs-table tbody tr").evaluate_all(
        "rows => rows.map(r => r.dataset.slug)") == ["idle", "marker"]
    page.screenshot(path=str(shots / "04-dashboard.png"), full_page=True)

    no_csp_violations(page)
    assert chromium.console_problems(console) == []
