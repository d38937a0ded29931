"""A pytest plugin: the ``gonext_plugin`` fixture, a factory of :class:`PluginHarness` closed after the test.

Loaded automatically through the ``pytest11`` entry point once the package is installed (or with
``-p gonext_plugins.testing.pytest_plugin``)::

    def test_reading_time(gonext_plugin):
        plugin = gonext_plugin("reading-time", settings={"wordsPerMinute": 100})
        assert plugin.action("wp_head").output is None
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ._harness import PluginHarness


@pytest.fixture
def gonext_plugin() -> Iterator[Callable[..., PluginHarness]]:
    """``gonext_plugin(target, **options)``: a project dir, a .gnplugin or a .wasm (PluginHarness.load)."""
    opened: list[PluginHarness] = []

    def factory(target: str | Path, **options: Any) -> PluginHarness:
        harness = PluginHarness.load(target, **options)
        opened.append(harness)
        return harness

    yield factory
    for harness in opened:
        harness.close()
