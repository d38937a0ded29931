"""Issue #13, class 4, in a real browser: Debian's Chromium, headless, through Playwright.

A plugin holding ``hooks.subscribe`` but not ``html.raw`` returns script, ``onerror``,
``javascript:`` links, ``<base>``, meta refresh and escaping-breakers through an action
(``wp_head``) and a filter (``the_content``): the post page must run none of it and send no request
but its own. The same plugin with ``html.raw`` is the control: there the detector sees the payloads
fire, so a quiet page means something. Then the admin: the install dialog shows ``html.raw`` as high
risk, and the admin pages and the live log page work under the Content-Security-Policy with no
violation. Screenshots go to ``test-artifacts/security-markup/``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from gonext_plugins import bundle
from project.blog.models import Post
from tests.browser import chromium
from tests.conftest import REPO, guest_wasm, make_manifest

from ..test_logs_cross_process import Site
from .test_plugin_markup import HOOKS, install_markup_guest

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
browser = chromium.browser  # the module-scoped fixture every browser test shares

SHOTS = REPO / "test-artifacts" / "security-markup"
PASSWORD = "correct horse battery staple"


@dataclass
class Watched:
    """A tab and everything it did: requests, console lines, dialogs, uncaught errors."""

    page: Any
    requests: list[tuple[str, str]] = field(default_factory=list)
    console: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def shot(self, name: str) -> None:
        SHOTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)

    def csp_violations(self) -> list[str]:
        return [line for line in self.console if "Content Security Policy" in line]


def watch(browser: Any, base_url: str, cookies: list[dict[str, str]] | None = None) -> Watched:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, base_url=base_url)
    context.set_default_timeout(15_000)
    if cookies:
        context.add_cookies(cookies)
    watched = Watched(context.new_page())
    page = watched.page
    page.on("request", lambda request: watched.requests.append((request.method, request.url)))
    page.on("console", lambda message: watched.console.append(message.text))
    page.on("pageerror", lambda exc: watched.errors.append(str(exc)))

    def on_dialog(dialog: Any) -> None:
        watched.dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    return watched


def visit_and_poke(watched: Watched, url: str) -> None:
    """Load the page, let every timer and load handler run, click every link the plugin made."""
    page = watched.page
    page.goto(url, wait_until="load")
    page.wait_for_load_state("networkidle")
    for link in page.get_by_text("xss-link").all():
        link.click(no_wait_after=True)
    page.wait_for_load_state("networkidle")


def test_hostile_markup_runs_nothing_and_sends_no_request(browser: Any, live_server: Any,
                                                           make_bundle: Any) -> None:
    install_markup_guest(make_bundle, raw=False)
    post = Post.objects.create(title="Ordinary post", slug="ordinary", body="Plain words.")
    watched = watch(browser, live_server.url)
    visit_and_poke(watched, post.get_absolute_url())
    page = watched.page
    watched.shot("post-without-html-raw")

    assert page.url == live_server.url + post.get_absolute_url()  # no refresh, no javascript: navigation
    assert page.evaluate("typeof window.__xss") == "undefined"
    assert [url for _, url in watched.requests if "__xss" in url] == []
    assert {method for method, _ in watched.requests} == {"GET"}
    assert [url for _, url in watched.requests if not url.startswith(live_server.url)] == []  # <base> gone
    assert sorted(url.removeprefix(live_server.url) for _, url in watched.requests) == \
        sorted([post.get_absolute_url(), "/static/blog/site.css"])
    assert watched.dialogs == [] and watched.errors == []
    assert page.locator("p.lead").inner_text() == "Plugin text survives"
    assert page.title() == "</title><script>fetch('/__xss/title')</script>"  # text, not markup


def test_control_with_html_raw_the_same_payloads_fire(browser: Any, live_server: Any,
                                                      make_bundle: Any) -> None:
    """Without this, a page that ran nothing could mean a detector that sees nothing."""
    install_markup_guest(make_bundle, raw=True)
    post = Post.objects.create(title="Ordinary post", slug="ordinary", body="Plain words.")
    watched = watch(browser, live_server.url)
    page = watched.page
    with page.expect_request(lambda request: "__xss/head-script" in request.url):
        page.goto(post.get_absolute_url(), wait_until="commit")
    assert [url for _, url in watched.requests if "__xss/head-script" in url], watched.requests


def test_install_dialog_marks_html_raw_high_risk_under_the_csp(browser: Any, live_server: Any,
                                                                publisher: Any, tmp_path: Path,
                                                                django_user_model: Any) -> None:
    from playwright.sync_api import expect

    django_user_model.objects.create_superuser("admin", "admin@example.com", PASSWORD)
    caps = ["hooks.subscribe", "html.raw"]
    raw = bundle.sign(bundle.pack(make_manifest(capabilities=caps, hooks=HOOKS), guest_wasm("markup_guest")),
                      publisher.private_key)
    path = tmp_path / "raw-markup.gnplugin"
    path.write_bytes(raw)
    watched = watch(browser, live_server.url)
    page = watched.page

    response = page.goto("/admin/login/?next=/admin/gonext_plugins/plugin/")
    assert "script-src 'self'" in response.headers["content-security-policy"]
    page.fill("#id_username", "admin")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.click("#gn-install-plugin")
    page.set_input_files("#id_bundle", str(path))
    page.click("input[name=_upload]")
    expect(page.locator("h1")).to_contain_text("Install Demo plugin?")
    row = page.locator('#gn-capabilities tr[data-capability="html.raw"]')
    expect(row).to_contain_text("high risk")
    expect(row).to_contain_text("run scripts in every page, including those the admins view")
    expect(page.locator("#gn-high-risk")).to_contain_text("html.raw")
    watched.shot("install-dialog-html-raw")
    page.click("#gn-install-activate")
    expect(page.locator(".messagelist")).to_contain_text("Installed Demo plugin 1.0.0")
    watched.shot("plugin-page-under-csp")
    page.goto("/api/docs/")  # Swagger UI: its start-up script is a file, so it runs under script-src 'self'
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("gonext plugins API")
    assert watched.csp_violations() == [] and watched.errors == []
    page.goto("/api/redoc/")
    expect(page.locator(".api-content h1").first).to_contain_text("gonext plugins API")
    watched.shot("api-redoc-under-csp")
    # Redoc asks Google for a web font and its CDN for a logo: blocked on purpose (no third-party
    # loads on this origin's admin pages); the page works without them. Nothing else may be refused.
    cosmetic = ("Loading the stylesheet 'https://fonts.googleapis.com/", "Loading the image 'https://cdn.redoc.ly/")
    assert [v for v in watched.csp_violations() if not v.startswith(cosmetic)] == []
    assert watched.errors == []


def test_live_log_page_works_under_the_csp(browser: Any, tmp_path: Path) -> None:
    site = Site(tmp_path)
    site.setup()
    port = site.serve()
    try:
        base = f"http://127.0.0.1:{port}"
        watched = watch(browser, base, [{"name": "sessionid", "value": site.sessionid, "url": base}])
        response = watched.page.goto("/_/plugins/logs/demo/")
        assert "script-src 'self'" in response.headers["content-security-policy"]
        watched.page.wait_for_selector("#gn-log[data-connection='live']")
        watched.page.locator(".gn-log-msg", has_text="activated version 1.0.0").wait_for()
        watched.shot("live-log-under-csp")
        assert watched.csp_violations() == [] and watched.errors == []
    finally:
        site.close()
