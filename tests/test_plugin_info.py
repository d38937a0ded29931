"""A plugin knowing its grants (issue 16): ``plugin.info`` through a real guest written from ABI.md
alone (``tests/guests/hostcall_guest.wat``), and a denied call logging once per load, not per call.

The guest runs a filter whose hook name is the host function to call (``loop:<fn>`` calls it ten
times) and whose value is the payload; it answers ``{"value": <result>}`` or ``{"value": {"hc": -N}}``.
"""

from __future__ import annotations

import pytest

from gonext_plugins import hooks, lifecycle, logs
from gonext_plugins.models import PluginLogEntry
from gonext_plugins.registry import LoadedPlugin, registry
from tests import test_builtin_host
from tests.test_builtin_host import BAD_PAYLOAD, DENIED, call

pytestmark = pytest.mark.django_db

plugin = test_builtin_host.plugin  # the fixture: install and activate a hostcall_guest plugin


def denial_lines(slug: str) -> list[str]:
    """The plugin's stored log lines about denied host calls."""
    logs.flush()
    return list(PluginLogEntry.objects.filter(plugin=slug, message__contains="denied")
                .order_by("id").values_list("message", flat=True))


def test_plugin_info_tells_the_plugin_its_grants_hosts_and_the_sites_hooks(plugin) -> None:  # type: ignore[no-untyped-def]
    with hooks.declared_temporarily("tests_info_title", "filter"), \
            hooks.declared_temporarily("tests_info_saved", "action"):
        demo = plugin(caps=("kv",), optional=("http.fetch", "jobs.enqueue"), grant=("kv", "http.fetch"),
                      hosts=("api.example.com", "cdn.example.com:8443"),
                      grant_hosts=("cdn.example.com:8443",))
        info = call(demo, "plugin.info", {})
    offered = {(hook.name, hook.kind) for hook in hooks.catalogue()}
    assert {("tests_info_title", "filter"), ("tests_info_saved", "action")} - offered == {
        ("tests_info_title", "filter"), ("tests_info_saved", "action")}  # gone again after the block
    assert info["slug"] == "demo" and info["version"] == "1.0.0"
    assert info["capabilities"] == ["http.fetch", "kv", "log", "self"]  # jobs.enqueue: asked, not granted
    assert info["hosts"] == ["cdn.example.com:8443"]  # listed and granted; api.example.com only listed
    assert {"name": "tests_info_title", "kind": "filter"} in info["hooks"]
    assert {"name": "tests_info_saved", "kind": "action"} in info["hooks"]
    assert info["hooks"] == sorted(info["hooks"], key=lambda hook: hook["name"])
    assert set(info) == {"slug", "version", "capabilities", "hosts", "hooks"}


def test_plugin_info_needs_no_grant_and_follows_a_grant_change(  # type: ignore[no-untyped-def]
        plugin, django_capture_on_commit_callbacks) -> None:
    demo = plugin(caps=(), optional=("kv",), grant=())
    assert call(demo, "plugin.info", {})["capabilities"] == ["log", "self"]
    assert call(demo, "plugin.info", {})["hosts"] == []
    with django_capture_on_commit_callbacks(execute=True):
        lifecycle.grant("demo", ["kv"], "tests")
    demo = registry.get("demo")
    assert demo is not None
    assert call(demo, "plugin.info", {})["capabilities"] == ["kv", "log", "self"]


@pytest.mark.parametrize("payload", [{"slug": "other"}, [], "x", None])
def test_plugin_info_refuses_any_payload_but_an_empty_object(plugin, payload: object) -> None:  # type: ignore[no-untyped-def]
    assert call(plugin(), "plugin.info", payload) == BAD_PAYLOAD


def test_a_denied_optional_capability_logs_once_per_load_naming_what_would_grant_it(  # type: ignore[no-untyped-def]
        plugin, django_capture_on_commit_callbacks) -> None:
    logs.writer.reset()  # under tests lines wait for flush(): forget earlier tests' lines
    demo: LoadedPlugin = plugin(caps=(), optional=("kv",), grant=())
    # Two page views, each making ten denied kv calls: one line, not twenty.
    assert call(demo, "loop:kv.get", {"key": "views"}) == DENIED
    assert call(demo, "loop:kv.set", {"key": "views", "value": 1}) == DENIED
    lines = denial_lines("demo")
    assert len(lines) == 1
    assert "kv.get" in lines[0] and "'kv' not granted" in lines[0]
    assert "\"kv\" is in the manifest's optionalCapabilities" in lines[0] and "admin can grant it" in lines[0]

    # Loaded again (deactivated, activated): the next denial is logged again, once.
    with django_capture_on_commit_callbacks(execute=True):
        lifecycle.deactivate("demo", "tests")
    registry.sync(force=True)
    assert registry.get("demo") is None
    with django_capture_on_commit_callbacks(execute=True):
        lifecycle.activate("demo", "tests")
    again = registry.get("demo")
    assert again is not None and again is not demo
    assert call(again, "loop:kv.get", {"key": "views"}) == DENIED
    assert call(again, "kv.get", {"key": "views"}) == DENIED
    assert len(denial_lines("demo")) == 2


def test_a_capability_the_manifest_does_not_ask_for_names_the_manifest_change(plugin) -> None:  # type: ignore[no-untyped-def]
    logs.writer.reset()
    demo = plugin(caps=("kv",))
    assert call(demo, "loop:jobs.enqueue", {"job": "x"}) == DENIED
    assert call(demo, "jobs.enqueue", {"job": "x"}) == DENIED
    [line] = denial_lines("demo")
    assert 'add "jobs.enqueue" to optionalCapabilities in the manifest' in line
    assert "have an admin grant it" in line
