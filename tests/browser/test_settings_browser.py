"""The plugin settings form in a real browser: Debian's Chromium, headless, driven by Playwright
against pytest-django's live server (issue #16). A plugin declaring an integer with bounds, a url,
an enum, a boolean and a secret; its settings page as a superuser: every field with its default, an
out-of-bounds integer refused at its field with nothing saved, then valid values and a secret saved,
the secret shown as set but its value nowhere in the page nor in the audit log. No console errors
and no Content-Security-Policy violations on the way. Screenshots go to ``test-artifacts/settings/``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gonext_plugins import lifecycle
from gonext_plugins.models import AuditEvent, Plugin
from tests.browser import chromium
from tests.conftest import guest_wasm

# Playwright's sync API runs an event loop in this thread; the ORM calls the test makes between
# browser steps are ordinary synchronous ones.
pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
browser = chromium.browser  # the module-scoped fixture every browser test shares

PASSWORD = "correct horse battery staple"
SECRET = "sk-live-BROWSER-0123456789"
SETTINGS: dict[str, Any] = {
    "type": "object",
    "properties": {
        "wordsPerMinute": {"type": "integer", "title": "Words per minute", "minimum": 50,
                           "maximum": 1000, "default": 200},
        "site": {"type": "string", "title": "Site", "format": "url", "default": "https://example.com"},
        "style": {"type": "string", "title": "Style", "enum": ["short", "long"], "default": "short"},
        "enabled": {"type": "boolean", "title": "Enabled", "default": True},
        "apiKey": {"type": "string", "title": "API key", "secret": True, "minLength": 8},
    },
}

@pytest.fixture
def page(browser: Any, live_server: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, base_url=live_server.url)
    context.set_default_timeout(15_000)
    context.add_init_script(chromium.WATCH_CSP)
    tab = context.new_page()
    yield tab
    context.close()


def test_settings_form_renders_refuses_saves_and_hides_the_secret(
        page: Any, make_bundle: Any, django_user_model: Any, artifacts_dir: Path) -> None:
    from playwright.sync_api import expect

    shots = chromium.fresh_shots(artifacts_dir, "settings")
    console = chromium.capture_console(page)

    django_user_model.objects.create_superuser("admin", "admin@example.com", PASSWORD)
    bundle = make_bundle(wasm=guest_wasm("hostcall_guest"), settings=SETTINGS)
    lifecycle.install(bundle, ["kv"], "tests", activate=True)
    plugin = Plugin.objects.get(slug="demo")
    url = f"/admin/gonext_plugins/plugin/{plugin.pk}/settings/"

    # log in, straight to the settings page
    page.goto(f"/admin/login/?next={url}")
    page.fill("#id_username", "admin")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    expect(page.locator("form.gn-settings")).to_be_visible()

    # every field, each showing its default
    for name, label in (("wordsPerMinute", "Words per minute"), ("site", "Site"), ("style", "Style"),
                        ("enabled", "Enabled"), ("apiKey", "API key")):
        expect(page.locator(f"#gn-setting-{name} label")).to_have_text(f"{label}:")
    expect(page.locator("#id_wordsPerMinute")).to_have_attribute("placeholder", "200")
    expect(page.locator("#id_wordsPerMinute")).to_have_attribute("inputmode", "numeric")
    expect(page.locator("#id_site")).to_have_attribute("placeholder", "https://example.com")
    expect(page.locator("#id_style option").first).to_have_text("(default: short)")
    assert page.locator("#id_style option").all_inner_texts() == ["(default: short)", "short", "long"]
    assert page.locator("#id_enabled option").all_inner_texts() == ["(default: true)", "true", "false"]
    expect(page.locator("#id_apiKey")).to_have_attribute("type", "password")
    expect(page.locator("#gn-setting-apiKey .help")).to_contain_text("secret: not set")
    page.screenshot(path=str(shots / "01-defaults.png"), full_page=True)

    # an out-of-bounds integer: refused at its field, nothing saved
    page.fill("#id_wordsPerMinute", "5")
    page.fill("#id_site", "https://blog.example.org")
    page.fill("#id_apiKey", SECRET)
    page.click("input[name=_save]")
    expect(page.locator("#gn-setting-wordsPerMinute.errors .errorlist")).to_have_text("must be at least 50")
    assert page.locator(".errorlist").count() == 1
    expect(page.locator("#id_wordsPerMinute")).to_have_value("5")  # what was typed stays to fix
    expect(page.locator("#id_apiKey")).to_have_value("")  # a password field never echoes
    assert SECRET not in page.content()
    plugin.refresh_from_db()
    assert plugin.settings == {}
    assert not AuditEvent.objects.filter(action="settings").exists()
    page.screenshot(path=str(shots / "02-refused.png"), full_page=True)

    # valid values and a secret: saved
    page.fill("#id_wordsPerMinute", "250")
    page.select_option("#id_style", "long")
    page.select_option("#id_enabled", "false")
    page.fill("#id_apiKey", SECRET)
    page.click("input[name=_save]")
    expect(page.locator(".messagelist")).to_contain_text("The settings of Demo plugin were saved.")
    plugin.refresh_from_db()
    assert plugin.settings == {"wordsPerMinute": 250, "site": "https://blog.example.org", "style": "long",
                               "enabled": False, "apiKey": SECRET}
    described = {entry["name"]: entry for entry in lifecycle.settings.describe(plugin)}
    assert described["apiKey"]["set"] and "value" not in described["apiKey"]
    assert described["wordsPerMinute"]["value"] == 250
    event = AuditEvent.objects.get(action="settings")
    assert event.details["after"]["apiKey"] == "[redacted]"
    assert SECRET not in json.dumps([e.details for e in AuditEvent.objects.all()])
    assert SECRET not in page.content()

    # back on the settings page: the saved values, the secret set but not shown
    page.goto(url)
    expect(page.locator("#id_wordsPerMinute")).to_have_value("250")
    expect(page.locator("#id_site")).to_have_value("https://blog.example.org")
    expect(page.locator("#id_style")).to_have_value("long")
    expect(page.locator("#id_enabled")).to_have_value("false")
    expect(page.locator("#id_apiKey")).to_have_value("")
    expect(page.locator("#gn-setting-apiKey .help")).to_contain_text("secret: set; leave blank to keep it")
    assert SECRET not in page.content()
    page.screenshot(path=str(shots / "03-saved.png"), full_page=True)

    # leaving the secret blank keeps it
    page.fill("#id_wordsPerMinute", "300")
    page.click("input[name=_save]")
    expect(page.locator(".messagelist")).to_contain_text("were saved")
    plugin.refresh_from_db()
    assert plugin.settings["apiKey"] == SECRET and plugin.settings["wordsPerMinute"] == 300
    assert SECRET not in page.content()

    assert chromium.csp_violations(page) == []
    assert chromium.console_problems(console) == []
