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
