"""Run and unit-test a plugin without a Django site: ``from gonext_plugins.testing import PluginHarness``.

The plugin runs in the real runtime (limits, grants, trap reports as on a site); the host functions
answer from memory with the app's own payload rules. Nothing in this package imports Django, so a
plugin's repository can test its hooks in CI with pytest alone (docs/testing-plugins.md)::

    with PluginHarness.from_project("my-plugin", settings={"wordsPerMinute": 100}) as plugin:
        call = plugin.filter("the_content", "<p>hi</p>", {"body": "hi"})
        assert call.ok and call.output.startswith("<p><em>1 min read")
        run_fixture(plugin, "fixtures/the_content.json").check()
"""

from ._fixture import FixtureResult, json_diff, run_fixture
from ._harness import CallResult, LogLine, PluginHarness, built_wasm, load_json
from ._host import HostCall, HttpStub, MemoryKV

__all__ = ["CallResult", "FixtureResult", "HostCall", "HttpStub", "LogLine", "MemoryKV", "PluginHarness",
           "built_wasm", "json_diff", "load_json", "run_fixture"]
