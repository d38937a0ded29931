"""The plugin admin in a real browser: Debian's Chromium, headless, driven by Playwright against
pytest-django's live server. One story, a screenshot per step under ``test-artifacts/admin/``:
log in, upload the SEO plugin (compiled from its Zig source), read the dialog, install and
activate, see its output on a blog post, upgrade to a version asking for a new capability, deactivate,
and have a tampered bundle refused.

If the browser cannot start the test fails and says why: a skipped browser test proves nothing.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gonext_plugins import bundle
from gonext_plugins.devtools.zigbuild import build_zig
from gonext_plugins.models import Plugin, PluginState
from project.blog.models import Post
from tests.browser import chromium
from tests.conftest import REPO

# Playwright's sync API runs an event loop in this thread; the ORM calls the test makes between
# browser steps are ordinary synchronous ones.
pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
browser = chromium.browser  # the module-scoped fixture every browser test shares

SEO = REPO / "examples" / "plugins" / "seo"
SHOTS = REPO / "test-artifacts" / "admin"
PASSWORD = "correct horse battery staple"


@pytest.fixture
def page(browser: Any, live_server: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, base_url=live_server.url)
    context.set_default_timeout(15_000)
    tab = context.new_page()
    yield tab
    context.close()


class Shots:
    """Numbered full-page screenshots, one per step."""

    def __init__(self, page: Any) -> None:
        self.page = page
        self.number = 0
        SHOTS.mkdir(parents=True, exist_ok=True)
        for old in SHOTS.glob("*.png"):
            old.unlink()

    def __call__(self, step: str) -> None:
        self.number += 1
        self.page.screenshot(path=str(SHOTS / f"{self.number:02d}-{step}.png"), full_page=True)


def seo_bundles(private_key: str, tmp_path: Path) -> dict[str, Path]:
    """The SEO plugin as shipped (1.0.0), an upgrade asking for http.fetch, and a tampered copy."""
    wasm = build_zig(SEO).read_bytes()
    manifest = {**json.loads((SEO / "manifest.json").read_text()), "version": "1.0.0"}  # upgraded below
    v1 = bundle.sign(bundle.pack(manifest, wasm), private_key)
    upgraded = {**manifest, "version": "1.1.0", "http": {"allowedHosts": ["schema.org"]},
                "capabilities": [*manifest["capabilities"], "http.fetch"]}
    v2 = bundle.sign(bundle.pack(upgraded, wasm), private_key)
    at = v1.index(b"plugin.wasm") + 200  # a byte inside the signed wasm: the zip's CRC catches it
    tampered = v1[:at] + bytes([v1[at] ^ 0xFF]) + v1[at + 1:]
    with zipfile.ZipFile(io.BytesIO(v1)) as archive:  # a careful attacker re-zips: the signature catches it
        entries = {name: archive.read(name) for name in archive.namelist()}
    entries["plugin.wasm"] = entries["plugin.wasm"][:-1] + bytes([entries["plugin.wasm"][-1] ^ 1])
    rezipped = bundle._write_zip(entries)
    paths = {}
    for name, data in (("v1", v1), ("v2", v2), ("tampered", tampered), ("rezipped", rezipped)):
        paths[name] = tmp_path / f"seo-{name}.gnplugin"
        paths[name].write_bytes(data)
    return paths


def show_findings(page: Any, title: str) -> None:
    """Put what the test found in the page's invisible head (JSON-LD, OpenGraph tags) on screen, in
    a box marked as the test's, so the screenshot shows the plugin's output or its absence."""
    page.evaluate("""title => {
        const selector = 'script[type="application/ld+json"], meta[property^="og:"]';
        const found = [...document.querySelectorAll(selector)]
            .map(el => el.outerHTML).join('\\n') || '(no JSON-LD, no OpenGraph tags)';
        const box = document.createElement('pre');
        box.style.cssText = 'margin:16px auto;max-width:900px;padding:12px;border:3px dashed #c00;' +
            'background:#fff8e1;color:#222;white-space:pre-wrap;font-size:12px';
        box.textContent = title + '\\n\\n' + found;
        document.body.appendChild(box);
    }""", title)


def json_ld(page: Any) -> list[Any]:
    return [json.loads(text) for text in
            page.locator('script[type="application/ld+json"]').all_text_contents()]


def test_install_activate_upgrade_deactivate_and_refuse(page: Any, publisher: Any, tmp_path: Path,
                                                         django_user_model: Any) -> None:
    from playwright.sync_api import expect

    django_user_model.objects.create_superuser("admin", "admin@example.com", PASSWORD)
    post = Post.objects.create(title="Sandboxed plugins in Django",
                               slug="sandboxed", body="Fuel, deadlines and signed bundles.")
    bundles = seo_bundles(publisher.private_key, tmp_path)
    shot = Shots(page)

    # log in
    page.goto("/admin/login/?next=/admin/gonext_plugins/plugin/")
    page.fill("#id_username", "admin")
    page.fill("#id_password", PASSWORD)
    shot("login")
    page.click("input[type=submit]")
    expect(page.locator("#gn-install-plugin")).to_be_visible()
    shot("empty-changelist")

    # upload: the dialog lists every capability with its risk
    page.click("#gn-install-plugin")
    page.set_input_files("#id_bundle", str(bundles["v1"]))
    shot("upload")
    page.click("input[name=_upload]")
    expect(page.locator("h1")).to_contain_text("Install SEO?")
    rows = page.locator("#gn-capabilities tbody tr")
    expected = {"hooks.subscribe": "medium", "jobs.enqueue": "medium", "posts.read": "low",
                "posts.write": "medium"}
    assert rows.count() == len(expected) + 1  # and kv, optional since SEO 1.3.0 (its post counter)
    for name, risk in expected.items():
        row = page.locator(f'#gn-capabilities tr[data-capability="{name}"]')
        expect(row).to_contain_text(f"{risk} risk")
        expect(row.locator("input[type=checkbox]")).to_be_disabled()  # required: checked and locked
        expect(row.locator("input[type=checkbox]")).to_be_checked()
    optional = page.locator('#gn-capabilities tr[data-capability="kv"]')
    expect(optional).to_contain_text("low risk")
    expect(optional.locator("input[type=checkbox]")).to_be_enabled()  # optional: the admin decides
    expect(page.locator("#gn-signature")).to_contain_text("valid")
    expect(page.locator("#gn-facts")).to_contain_text(publisher.fingerprint)
    expect(page.locator("#gn-hooks")).to_contain_text("wp_head")
    assert not Plugin.objects.exists(), "nothing may be written before the admin confirms"
    shot("install-dialog")
    page.emulate_media(color_scheme="dark")  # Django admin's dark theme: our colours are its variables
    shot("install-dialog-dark")
    page.emulate_media(color_scheme="light")

    # install and activate
    page.click("#gn-install-activate")
    expect(page.locator(".messagelist")).to_contain_text("Installed SEO 1.0.0 and activated it")
    expect(page.locator("#gn-statebar")).to_contain_text("Active")
    shot("plugin-page-active")

    # the plugin's output on a blog post: Article JSON-LD and OpenGraph tags
    page.goto(post.get_absolute_url())
    [article] = json_ld(page)
    assert article["@type"] == "Article" and article["headline"] == post.title
    assert page.locator('meta[property="og:title"]').get_attribute("content") == post.title
    show_findings(page, "Added by the test: the SEO plugin's output found in this page")
    shot("post-with-seo-output")

    # the changelist now counts calls
    page.goto("/admin/gonext_plugins/plugin/")
    expect(page.locator("#result_list")).to_contain_text("1.0.0")
    expect(page.locator("#result_list .gn-state-active")).to_be_visible()
    shot("changelist-active")

    # upgrade to 1.1.0, which asks for http.fetch: marked new, called out as high risk, needs consent
    page.click("text=SEO")
    page.click("#gn-upgrade-link")
    page.set_input_files("#id_bundle", str(bundles["v2"]))
    page.click("input[name=_upload]")
    expect(page.locator("#gn-version-change")).to_contain_text("1.0.0 → 1.1.0")
    new_row = page.locator('#gn-capabilities tr[data-capability="http.fetch"]')
    expect(new_row).to_contain_text("NEW")
    expect(new_row).to_contain_text("high risk")
    expect(page.locator("#gn-high-risk")).to_contain_text("http.fetch")
    expect(new_row.locator("input[type=checkbox]")).not_to_be_checked()
    shot("upgrade-dialog")
    page.click("#gn-upgrade")  # without consent: refused, 1.0.0 keeps running
    expect(page.locator("#gn-confirm-error")).to_contain_text("http.fetch")
    assert Plugin.objects.get().active_version.version == "1.0.0"
    shot("upgrade-needs-consent")
    page.locator('#gn-capabilities tr[data-capability="http.fetch"] input[type=checkbox]').check()
    page.click("#gn-upgrade")
    expect(page.locator(".messagelist")).to_contain_text("Upgraded SEO to 1.1.0")
    expect(page.locator("#gn-versions")).to_contain_text("Roll back to 1.0.0")
    shot("upgraded")

    # deactivate: the output is gone
    page.click("#gn-deactivate")
    expect(page.locator(".messagelist")).to_contain_text("SEO is deactivated")
    assert Plugin.objects.get().state == PluginState.INACTIVE
    shot("deactivated")
    page.goto(post.get_absolute_url())
    assert json_ld(page) == [] and page.locator('meta[property="og:title"]').count() == 0
    show_findings(page, "Added by the test: plugin output found in this page after deactivation")
    shot("post-without-output")

    # tampered bundles are refused, plainly: a flipped byte, and a re-zipped changed wasm
    for name, reason in (("tampered", "truncated or damaged"), ("rezipped", "changed after signing")):
        page.goto("/admin/gonext_plugins/plugin/install/")
        page.set_input_files("#id_bundle", str(bundles[name]))
        page.click("input[name=_upload]")
        expect(page.locator("#gn-upload-error")).to_contain_text("This file was refused")
        expect(page.locator("#gn-upload-error")).to_contain_text(reason)
        shot(f"{name}-refused")
    assert Plugin.objects.get().versions.count() == 2
