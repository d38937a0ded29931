"""The plugin page's rollout controls in a real browser (Debian's Chromium through Playwright,
against pytest-django's live server): start a staff-only rollout, see the plugin's output as staff
and not as an anonymous visitor, switch to a percentage, read the cohorts' figures, promote. No
console errors and no Content-Security-Policy violations. Screenshots: ``test-artifacts/rollout/``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gonext_plugins import bundle, lifecycle
from gonext_plugins.models import AuditEvent, Plugin, PluginRollout
from project.blog.models import Post
from tests.browser import chromium
from tests.test_admin import MARKER, signed_bundle

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
browser = chromium.browser

PASSWORD = "correct horse battery staple"


@pytest.fixture
def context(browser: Any, live_server: Any) -> Iterator[Any]:
    ctx = browser.new_context(viewport={"width": 1280, "height": 1000}, base_url=live_server.url)
    ctx.set_default_timeout(15_000)
    ctx.add_init_script(chromium.WATCH_CSP)
    yield ctx
    ctx.close()


def test_rollout_controls_start_show_figures_and_promote(
        context: Any, browser: Any, live_server: Any, publisher: Any, django_user_model: Any,
        artifacts_dir: Path, settings: Any) -> None:
    from playwright.sync_api import expect

    settings.GONEXT_PLUGINS = {**settings.GONEXT_PLUGINS,
                               "ROLLOUT_CHECK_INTERVAL": 0, "ROLLOUT_MIN_REQUESTS": 50, "SYNC_INTERVAL": 0.0}
    shots = chromium.fresh_shots(artifacts_dir, "rollout")
    page = context.new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(f"{m.text} at {m.location.get('url', '')}")
            if m.type == "error" and not m.location.get("url", "").endswith("/favicon.ico") else None)
    page.on("pageerror", lambda exc: problems.append(str(exc)))

    django_user_model.objects.create_superuser("admin", "admin@example.com", PASSWORD)
    lifecycle.install(bundle.read(signed_bundle(publisher.private_key)), ["hooks.subscribe"], "tests")
    plugin = Plugin.objects.get(slug="marker")
    Post.objects.create(title="Hello", slug="hello", body="First post.")
    url = f"/admin/gonext_plugins/plugin/{plugin.pk}/change/"

    page.goto(f"/admin/login/?next={url}")
    page.fill("#id_username", "admin")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    expect(page.locator("#gn-rollout h2")).to_have_text("Staged rollout")
    expect(page.locator("#gn-rollout-promote")).to_have_count(0)  # nothing to promote yet
    page.screenshot(path=str(shots / "01-not-started.png"), full_page=True)

    # staff only: staff see the plugin's output, an anonymous visitor does not
    page.click("#gn-rollout-staff")
    expect(page.locator(".messagelist")).to_contain_text("Marker is rolling out to staff only.")
    expect(page.locator("#gn-rollout-state")).to_contain_text("staff only")
    assert PluginRollout.objects.get().mode == "staff"
    page.goto("/posts/hello/")
    expect(page.locator("p.gn-marker")).to_have_text(MARKER)
    anonymous = browser.new_context(base_url=live_server.url)
    visitor = anonymous.new_page()
    visitor.goto("/posts/hello/")
    expect(visitor.locator("h1, h2").first).to_be_visible()
    assert visitor.locator("p.gn-marker").count() == 0
    visitor.screenshot(path=str(shots / "02-anonymous-without-it.png"), full_page=True)
    anonymous.close()

    # a percentage, then the figures of both cohorts
    page.goto(url)
    page.fill("#gn-rollout-percent", "40")
    page.click("#gn-rollout-percent-button")
    expect(page.locator(".messagelist")).to_contain_text("rolling out to 40% of visitors")
    for _ in range(3):
        page.goto("/posts/hello/")
    page.goto(url)
    expect(page.locator("#gn-rollout-state")).to_contain_text("40% of visitors")
    expect(page.locator("#gn-rollout-figures tbody tr")).to_have_count(2)
    expect(page.locator("#gn-rollout-verdict")).to_contain_text("judged once each cohort has 50 requests")
    cells = page.locator("#gn-rollout-figures tbody td:nth-child(2)").all_inner_texts()
    assert sum(int(cell) for cell in cells) >= 4, cells  # the post three times and the admin page
    page.screenshot(path=str(shots / "03-percent-figures.png"), full_page=True)

    page.click("#gn-rollout-promote")
    expect(page.locator(".messagelist")).to_contain_text("Marker now runs for everyone.")
    expect(page.locator("#gn-rollout")).to_have_count(0)
    assert not PluginRollout.objects.exists()
    assert [e.action for e in AuditEvent.objects.filter(action__startswith="rollout").order_by("id")] == \
        ["rollout_start", "rollout_change", "rollout_promote"]
    page.screenshot(path=str(shots / "04-promoted.png"), full_page=True)
    assert chromium.csp_violations(page) == []
    assert problems == []
