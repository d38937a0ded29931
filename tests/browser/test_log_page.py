"""The live log page in Debian's Chromium (Playwright) against a real uvicorn server: a blog page
request whose ``the_content`` filter runs a plugin that logs, and the line on the page within a
second; then the level filter, search, pause/resume, the dropped-lines notice, autoscroll, and
reconnecting after the server restarts. Screenshots go to ``test-artifacts/logs/``."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ..test_logs_cross_process import POST_SLUG, Site
from .chromium import launch

pytestmark = pytest.mark.browser


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[Site, int]]:
    # A low limit, so a burst of page views shows the dropped-lines notice.
    site = Site(tmp_path, GONEXT_LOG_RATE="2", GONEXT_LOG_BURST="30")
    site.setup()
    port = site.serve()
    try:
        yield site, port
    finally:
        site.close()


@pytest.fixture
def page(site: tuple[Site, int]) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    _, port = site
    with sync_playwright() as pw:
        browser = launch(pw)
        context = browser.new_context(viewport={"width": 1280, "height": 800})
        context.add_cookies([{"name": "sessionid", "value": site[0].sessionid,
                              "url": f"http://127.0.0.1:{port}"}])
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        yield page
        browser.close()
        assert not errors, f"JavaScript errors: {errors}"


def lines(page: Any) -> list[str]:
    return page.locator(".gn-log-lines .gn-log-msg").all_inner_texts()


def test_live_log_page(site: tuple[Site, int], page: Any, artifacts_dir: Path) -> None:
    server, port = site
    shots = artifacts_dir / "logs"
    shots.mkdir(exist_ok=True)
    page.goto(f"http://127.0.0.1:{port}/_/plugins/logs/demo/")
    page.wait_for_selector("#gn-log[data-connection='live']", timeout=10_000)
    assert lines(page) == ["activated version 1.0.0 by setup"]
    assert "Django administration" in page.content()

    # A real page request runs the plugin's the_content filter, which logs: the line reaches the page
    # pushed, without a reload (waited for generously: a loaded machine is slow, not wrong).
    server.get(port, f"/posts/{POST_SLUG}/")
    started = time.monotonic()
    page.locator(".gn-log-msg", has_text="called the_content").wait_for(timeout=60_000)
    shown_after = time.monotonic() - started
    print(f"line on the page {shown_after * 1000:.0f} ms after the request returned")
    first = page.locator(".gn-log-line").last
    assert "gn-level-info" in first.get_attribute("class") and first.locator(".gn-log-src").inner_text() == \
        "guest 1.0.0"

    # Level filter: the server replays the backlog under the new minimum level.
    page.select_option(".gn-log-level", "2")
    page.wait_for_function("() => document.querySelectorAll('.gn-log-line').length === 0")
    assert page.locator(".gn-log-empty").is_visible()
    assert "No lines match the level or search chosen" in page.locator(".gn-log-empty").inner_text()
    page.select_option(".gn-log-level", "0")
    page.locator(".gn-log-msg", has_text="called the_content").wait_for(timeout=2_000)

    # Pause holds live lines and counts them; resume shows them.
    page.click(".gn-log-pause")
    server.get(port, f"/posts/{POST_SLUG}/")
    server.get(port, f"/posts/{POST_SLUG}/")
    page.wait_for_function("() => document.querySelector('.gn-log-pause').textContent === 'Resume (2 held)'",
                           timeout=2_000)
    assert lines(page).count("called the_content") == 1
    page.click(".gn-log-pause")
    assert lines(page).count("called the_content") == 3 and page.inner_text(".gn-log-pause") == "Pause"

    # Search: only matching lines, the match highlighted.
    page.fill(".gn-log-search", "THE_CONTENT")
    page.wait_for_function("() => document.querySelectorAll('.gn-log-line').length === 3")
    assert page.locator(".gn-log-msg mark").first.inner_text() == "the_content"
    page.fill(".gn-log-search", "")
    page.wait_for_function("() => document.querySelectorAll('.gn-log-line').length === 4")

    # A burst of page views goes over the limit (burst 30): the notice says how many were dropped.
    for _ in range(40):
        server.get(port, f"/posts/{POST_SLUG}/")
    notice = page.locator(".gn-log-dropped")
    notice.wait_for(state="visible", timeout=3_000)
    assert "dropped by the rate limit" in notice.inner_text()
    assert re.search(r"\d+ lines? dropped: over the log rate limit",
                     page.locator(".gn-log-dropline .gn-log-msg").first.inner_text())

    # Autoscroll follows the bottom, stops when the user scrolls up, and resumes at the bottom.
    frame = page.locator(".gn-log-frame")
    assert frame.evaluate("f => f.scrollHeight - f.scrollTop - f.clientHeight") < 30
    page.set_viewport_size({"width": 1280, "height": 560})  # a short frame: the lines overflow it
    frame.evaluate("f => { f.scrollTop = f.scrollHeight; f.dispatchEvent(new Event('scroll')); }")
    frame.evaluate("f => { f.scrollTop = 0; f.dispatchEvent(new Event('scroll')); }")
    page.wait_for_function(
        "() => document.querySelector('.gn-log-count').textContent.includes('autoscroll off')")
    time.sleep(1.1)  # past the 2 lines/s refill: the next line is accepted
    server.get(port, f"/posts/{POST_SLUG}/")
    page.locator(".gn-log-jump").wait_for(state="visible", timeout=3_000)
    assert frame.evaluate("f => f.scrollTop") == 0
    page.click(".gn-log-jump")
    assert frame.evaluate("f => f.scrollHeight - f.scrollTop - f.clientHeight") < 30
    page.set_viewport_size({"width": 1280, "height": 800})
    frame.evaluate("f => { f.scrollTop = f.scrollHeight; }")
    page.screenshot(path=str(shots / "log_page.png"), full_page=True)

    # The server goes away: a visible "reconnecting" state with backoff; back to live when it returns.
    server.stop_server(port)
    page.wait_for_selector("#gn-log[data-connection='reconnecting']", timeout=5_000)
    assert re.search(r"Disconnected · retry in \d+ s", page.inner_text(".gn-log-state"))
    page.screenshot(path=str(shots / "log_page_reconnecting.png"))
    server.serve(port)
    page.wait_for_selector("#gn-log[data-connection='live']", timeout=20_000)
    assert "called the_content" in lines(page)


def test_refused_without_the_permission(site: tuple[Site, int], page: Any, artifacts_dir: Path) -> None:
    """The page itself is refused (403); the socket, asked directly, closes with 4403."""
    server, port = site
    server.manage("shell", "-c", "from django.contrib.auth.models import User; "
                  "User.objects.get(username='watcher').user_permissions.clear()")
    response = page.goto(f"http://127.0.0.1:{port}/_/plugins/logs/demo/")
    assert response.status == 403
    code = page.evaluate("""() => new Promise(resolve => {
        const ws = new WebSocket(`ws://${location.host}/_/plugins/dev/logs/demo/`);
        ws.onclose = ev => resolve(ev.code);
    })""")
    assert code == 4403
