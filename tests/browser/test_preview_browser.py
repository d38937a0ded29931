"""Preview on a page, in a real browser (Debian's Chromium through Playwright, pytest-django's live
server): upload a bundle, open "Preview on a page" from the install dialog, preview "/" and a post, and
see both renders side by side in sandboxed frames, the HTML diff, the hook calls and what was held
back. Screenshots under ``test-artifacts/preview/``. Nothing is installed by any of it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gonext_plugins import bundle
from gonext_plugins.models import Plugin, PluginKV
from project.blog.models import Post
from tests.browser import chromium
from tests.conftest import REPO, guest_wasm, make_manifest

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
browser = chromium.browser

SHOTS = REPO / "test-artifacts" / "preview"
PASSWORD = "correct horse battery staple"
MANIFEST = {"slug": "previewer", "name": "Previewer",
            "capabilities": ["hooks.subscribe", "kv", "jobs.enqueue", "http.fetch"],
            "hooks": [{"name": "wp_head", "kind": "action"}, {"name": "the_content", "kind": "filter"}],
            "jobs": [{"name": "ping"}], "http": {"allowedHosts": ["example.com"]}}


@pytest.fixture
def page(browser: Any, live_server: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, base_url=live_server.url)
    context.set_default_timeout(20_000)
    tab = context.new_page()
    yield tab
    context.close()


def test_preview_from_the_install_dialog(page: Any, publisher: Any, tmp_path: Path,
                                         django_user_model: Any) -> None:
    from playwright.sync_api import expect

    SHOTS.mkdir(parents=True, exist_ok=True)
    django_user_model.objects.create_superuser("admin", "admin@example.com", PASSWORD)
    Post.objects.create(title="Hello preview", slug="hello", body="<p>A post to preview.</p>")
    raw = bundle.sign(bundle.pack(make_manifest(**MANIFEST), guest_wasm("preview_guest")),
                      publisher.private_key)
    path = tmp_path / "previewer.gnplugin"
    path.write_bytes(raw)
    csp_violations: list[str] = []
    page.on("console", lambda msg: csp_violations.append(msg.text)
            if "Content Security Policy" in msg.text else None)

    page.goto("/admin/login/?next=/admin/gonext_plugins/plugin/install/")
    page.fill("#id_username", "admin")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.set_input_files("#id_bundle", str(path))
    page.click("input[name=_upload]")
    expect(page.locator("h1")).to_contain_text("Install Previewer?")
    link = page.locator("#gn-preview-link")
    expect(link).to_be_visible()
    page.screenshot(path=str(SHOTS / "01-install-dialog.png"), full_page=True)

    page.goto(link.get_attribute("href"))  # the link opens a new tab; here the same tab
    expect(page.locator("#gn-preview-form")).to_be_visible()
    expect(page.locator("#gn-preview-suggested")).to_contain_text("/")
    page.fill("#id_path", "/")
    page.click("#gn-preview-run")
    expect(page.locator("#gn-preview-result")).to_be_visible()
    before, after = page.locator("#gn-preview-before"), page.locator("#gn-preview-after")
    assert before.get_attribute("sandbox") == "" and after.get_attribute("sandbox") == ""
    # Both frames really rendered the site's page (the blog's header), side by side.
    expect(page.frame_locator("#gn-preview-before").locator(".brand")).to_have_text("gonext demo blog")
    expect(page.frame_locator("#gn-preview-after").locator(".brand")).to_have_text("gonext demo blog")
    expect(page.frame_locator("#gn-preview-after").locator('meta[name="gn-preview"]')).to_have_count(1)
    expect(page.frame_locator("#gn-preview-before").locator('meta[name="gn-preview"]')).to_have_count(0)
    box_before, box_after = before.bounding_box(), after.bounding_box()
    assert box_before["x"] + box_before["width"] <= box_after["x"]  # before on the left, after on the right
    assert abs(box_before["y"] - box_after["y"]) < 2
    expect(page.locator("#gn-preview-diff .gn-diff-add")).to_contain_text(
        '<meta name="gn-preview" content="on">')
    expect(page.locator("#gn-preview-calls tbody tr")).to_have_count(1)
    expect(page.locator("#gn-preview-calls")).to_contain_text("wp_head")
    expect(page.locator("#gn-preview-writes")).to_contain_text("not queued")
    expect(page.locator("#gn-preview-writes")).to_contain_text("refused")
    page.screenshot(path=str(SHOTS / "02-preview-home.png"), full_page=True)

    page.fill("#id_path", "/posts/hello/")
    page.click("#gn-preview-run")
    expect(page.locator("#gn-preview-calls tbody tr")).to_have_count(2)
    expect(page.frame_locator("#gn-preview-after").locator("h1")).to_have_text("Hello preview")
    expect(page.locator("#gn-preview-logs")).to_contain_text('{"value":2}')
    page.screenshot(path=str(SHOTS / "03-preview-post.png"), full_page=True)

    page.fill("#id_path", "https://evil.example/")
    page.click("#gn-preview-run")
    expect(page.locator(".errorlist")).to_contain_text("not a path of this site")
    page.screenshot(path=str(SHOTS / "04-bad-path.png"), full_page=True)

    assert not Plugin.objects.exists() and not PluginKV.objects.exists()  # a preview installs nothing
    assert csp_violations == []
