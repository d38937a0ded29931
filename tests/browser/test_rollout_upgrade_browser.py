"""An upgrade rolled out from the admin's upgrade dialog, in a real browser (Debian's Chromium through
Playwright, against pytest-django's live server): choose "staff only" in the dialog, see 1.1.0 as
staff and 1.0.0 as an anonymous visitor, read the panel ("Upgrade 1.0.0 → 1.1.0") with both
cohorts' figures, widen it to a percentage, roll back to 1.0.0. No console errors and no
Content-Security-Policy violations. Screenshots: ``test-artifacts/rollout-upgrade/``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gonext_plugins import bundle, lifecycle
from gonext_plugins.models import AuditEvent, Plugin, PluginRollout
from project.blog.models import Post
from tests.browser import chromium
from tests.browser.test_rollout_browser import context
from tests.test_admin import marker_manifest
from tests.test_rollout_upgrade import said_by, versioned_guest

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
browser = chromium.browser
__all__ = ["context"]  # a fixture used by name: the rollout browser test's context

PASSWORD = "correct horse battery staple"


def signed(publisher: Any, version: str) -> bytes:
    return bundle.sign(bundle.pack(marker_manifest(version), versioned_guest(version)), publisher.private_key)


def test_upgrade_dialog_rolls_out_to_staff_then_the_panel_rolls_back(
        context: Any, browser: Any, live_server: Any, publisher: Any, django_user_model: Any,
        artifacts_dir: Path, settings: Any, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    settings.GONEXT_PLUGINS = {**settings.GONEXT_PLUGINS,
                               "ROLLOUT_CHECK_INTERVAL": 0, "ROLLOUT_MIN_REQUESTS": 50, "SYNC_INTERVAL": 0.0}
    shots = chromium.fresh_shots(artifacts_dir, "rollout-upgrade")
    page = context.new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(f"{m.text} at {m.location.get('url', '')}")
            if m.type == "error" and not m.location.get("url", "").endswith("/favicon.ico") else None)
    page.on("pageerror", lambda exc: problems.append(str(exc)))

    django_user_model.objects.create_superuser("admin", "admin@example.com", PASSWORD)
    lifecycle.install(bundle.read(signed(publisher, "1.0.0")), ["hooks.subscribe"], "tests", activate=True)
    plugin = Plugin.objects.get(slug="marker")
    Post.objects.create(title="Hello", slug="hello", body="First post.")
    upgrade_file = tmp_path / "marker-1.1.0.gnplugin"
    upgrade_file.write_bytes(signed(publisher, "1.1.0"))
    url = f"/admin/gonext_plugins/plugin/{plugin.pk}/change/"

    page.goto(f"/admin/login/?next={url}")
    page.fill("#id_username", "admin")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.click("#gn-upgrade-link")
    page.set_input_files("#id_bundle", str(upgrade_file))
    page.click("input[name=_upload]")
    expect(page.locator("#gn-upgrade-rollout h2")).to_have_text("Roll out first to")
    expect(page.locator("#gn-upgrade-rollout-everyone")).to_be_checked()  # the default changes nothing
    page.check("#gn-upgrade-rollout-staff")
    page.locator("#gn-upgrade-rollout").screenshot(path=str(shots / "01-dialog-choice.png"))
    page.screenshot(path=str(shots / "01-dialog.png"), full_page=True)
    page.click("#gn-upgrade")
    expect(page.locator(".messagelist")).to_contain_text(
        "Rolling out Marker 1.1.0 to staff only; everyone else keeps 1.0.0")
    expect(page.locator("#gn-rollout-state")).to_contain_text("Upgrade 1.0.0 → 1.1.0")
    row = PluginRollout.objects.get()
    assert (row.version.version, row.previous_version.version, row.mode) == ("1.1.0", "1.0.0", "staff")

    # the same page: staff see 1.1.0, an anonymous visitor 1.0.0
    page.goto("/posts/hello/")
    expect(page.locator("p.gn-marker")).to_have_text(said_by("1.1.0").ljust(34, "."))
    anonymous = browser.new_context(base_url=live_server.url)
    visitor = anonymous.new_page()
    for _ in range(2):
        visitor.goto("/posts/hello/")
        expect(visitor.locator("p.gn-marker")).to_have_text(said_by("1.0.0").ljust(34, "."))
    visitor.screenshot(path=str(shots / "02-anonymous-sees-1.0.0.png"), full_page=True)
    anonymous.close()

    # the panel: both cohorts' figures, named by version; widen to 10% of visitors
    page.goto(url)
    expect(page.locator("#gn-rollout-figures tbody tr")).to_have_count(2)
    expect(page.locator("#gn-rollout-figures tbody tr").nth(0)).to_contain_text("1.1.0 (cohort)")
    expect(page.locator("#gn-rollout-figures tbody tr").nth(1)).to_contain_text("1.0.0 (everyone else)")
    page.fill("#gn-rollout-percent", "10")
    page.click("#gn-rollout-percent-button")
    expect(page.locator(".messagelist")).to_contain_text("rolling out to 10% of visitors")
    expect(page.locator("#gn-rollout-state")).to_contain_text("Upgrade 1.0.0 → 1.1.0, 10% of visitors")
    cells = page.locator("#gn-rollout-figures tbody td:nth-child(2)").all_inner_texts()
    assert sum(int(cell) for cell in cells) >= 3, cells
    page.locator("#gn-rollout").screenshot(path=str(shots / "03-panel.png"))

    page.click("#gn-rollout-rollback")
    expect(page.locator(".messagelist")).to_contain_text(
        "Marker's rollout is rolled back: everyone runs 1.0.0 again.")
    expect(page.locator("#gn-rollout")).to_have_count(0)
    assert Plugin.objects.get().active_version.version == "1.0.0" and not PluginRollout.objects.exists()
    assert [e.action for e in AuditEvent.objects.filter(action__startswith="roll").order_by("id")] == \
        ["rollout_start", "rollout_change", "rollout_rollback", "rollback"]
    page.goto("/posts/hello/")
    expect(page.locator("p.gn-marker")).to_have_text(said_by("1.0.0").ljust(34, "."))
    page.screenshot(path=str(shots / "04-rolled-back.png"), full_page=True)
    assert chromium.csp_violations(page) == []
    assert problems == []
