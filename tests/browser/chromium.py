"""Debian's Chromium for the browser tests, headless through Playwright: where it is, its flags,
:func:`launch` and the module-scoped ``browser`` fixture. If the browser is missing or cannot
start the test fails and says why: a skipped browser test proves nothing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--no-first-run"]


def launch(playwright: Any) -> Any:
    """Start Chromium with ``playwright`` (a ``sync_playwright()`` context), or fail the test."""
    from playwright.sync_api import Error  # deferred: Playwright is needed by browser tests only

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (`make apt-deps` or "
                    "`apt-get install -y chromium`); the browser tests need it", pytrace=False)
    try:
        return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, timeout=30_000)
    except Error as exc:
        pytest.fail(f"Chromium at {CHROMIUM} did not start: {exc}", pytrace=False)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright  # deferred: as in launch()

    with sync_playwright() as playwright:
        chromium = launch(playwright)
        yield chromium
        chromium.close()


# Records CSP violations in ``window.__gnCsp``. Installed by the browser before any page script runs
# (not an inline script, so the page's own CSP does not apply to it).
WATCH_CSP = """window.__gnCsp = [];
document.addEventListener('securitypolicyviolation', e => window.__gnCsp.push(
    e.violatedDirective + ' blocked ' + (e.blockedURI || 'inline') +
    ' at ' + e.sourceFile + ':' + e.lineNumber));
"""


def csp_violations(page: Any) -> list[str]:
    """The CSP violations the page's documents reported since :data:`WATCH_CSP` was installed."""
    return list(page.evaluate("window.__gnCsp"))


def capture_console(page: Any) -> list[tuple[str, str, str]]:
    """Start recording the page's console messages and uncaught errors as (kind, text, url)."""
    console: list[tuple[str, str, str]] = []
    page.on("console", lambda message: console.append(
        (message.type, message.text, message.location.get("url", ""))))
    page.on("pageerror", lambda exc: console.append(("pageerror", str(exc), "")))
    return console


def console_problems(console: list[tuple[str, str, str]]) -> list[tuple[str, str, str]]:
    """The errors and warnings among ``console``. Chromium asks for /favicon.ico by itself; the admin
    has none, and that 404 is not the page's."""
    return [(kind, text, where) for kind, text, where in console
            if kind in ("error", "warning", "pageerror") and not where.endswith("/favicon.ico")]


def fresh_shots(artifacts_dir: Path, name: str) -> Path:
    """``test-artifacts/<name>/`` without the screenshots of an earlier run, which a person could
    otherwise mistake for this run's."""
    shots = artifacts_dir / name
    shots.mkdir(parents=True, exist_ok=True)
    for old in shots.glob("*.png"):
        old.unlink()
    return shots
