"""The plugin bridge: active plugins' manifest hooks on the bus, through real wasmtime guests."""

from __future__ import annotations

import asyncio
import logging

import pytest
from django.apps import apps

from gonext_plugins import bridge, hooks, lifecycle
from gonext_plugins.errors import PluginTrap
from gonext_plugins.models import Plugin, PluginFault, PluginState
from gonext_plugins.registry import registry
from project.blog.models import Post

# No real commits needed: the lifecycle's on-commit work (signals the registry reacts to) runs
# through django_capture_on_commit_callbacks(execute=True) where a test changes state.
pytestmark = pytest.mark.django_db

HOOKS = [
    {"name": "upper", "kind": "filter", "priority": 20},
    {"name": "panic", "kind": "filter"},
    {"name": "body", "kind": "action", "priority": 5},
    {"name": "echo", "kind": "action"},
    {"name": "oob", "kind": "action"},
]
CAPS = ["hooks.subscribe", "kv"]


@pytest.fixture
def active(make_bundle):  # type: ignore[no-untyped-def]
    lifecycle.install(make_bundle(capabilities=CAPS, hooks=HOOKS), CAPS, "tests", activate=True)
    registry.sync(force=True)
    return registry.get("demo")


def test_manifest_hooks_become_receivers_at_their_priority(active) -> None:  # type: ignore[no-untyped-def]
    proxies = {p.hook: p for p in active.extras["hook_proxies"]}
    assert hooks.has_filter("upper", proxies["upper"]) == 20
    assert hooks.has_action("body", proxies["body"]) == 5
    order: list[str] = []
    with hooks.register_temporarily("upper", lambda v: order.append("py10") or v + "!", 10), \
            hooks.register_temporarily("upper", lambda v: order.append("py30") or v + "?", 30):
        assert hooks.apply_filters("upper", "hello") == "HELLO!?"
    assert order == ["py10", "py30"]


def test_actions_return_plugin_bodies(active) -> None:  # type: ignore[no-untyped-def]
    # plugin markup is sanitized at the bridge: a bare <meta> is not on the allowlist
    assert hooks.do_action("body") == [{"html": ""}]


def test_the_app_made_ready_again_wires_each_plugin_once(make_bundle) -> None:  # type: ignore[no-untyped-def]
    """``AppConfig.ready`` runs again whenever ``INSTALLED_APPS`` is overridden: the registry's
    listeners must not double, or every plugin hook would run twice per call."""
    apps.get_app_config("gonext_plugins").ready()
    apps.get_app_config("gonext_plugins").ready()
    lifecycle.install(make_bundle(capabilities=CAPS, hooks=HOOKS), CAPS, "tests", activate=True)
    registry.sync(force=True)
    assert hooks.do_action("body") == [{"html": ""}]


def test_objects_cross_as_json(active) -> None:  # type: ignore[no-untyped-def]
    post = Post.objects.create(title="T", slug="t", body="B")
    [envelope] = hooks.do_action("echo", post, {"n": 1})
    assert envelope == {
        "kind": "action", "hook": "echo",
        "args": [{"id": post.pk, "title": "T", "slug": "t", "body": "B", "url": "/posts/t/",
                  "published": True}, {"n": 1}],
    }
    with pytest.raises(TypeError, match="not JSON-serializable"):
        hooks.do_action("echo", object())  # the site's bug: raised, not swallowed as a plugin fault


def test_deactivation_removes_every_proxy(active, django_capture_on_commit_callbacks) -> None:  # type: ignore[no-untyped-def]
    with django_capture_on_commit_callbacks(execute=True):
        lifecycle.deactivate("demo", "tests")
    registry.maybe_sync()
    assert not hooks.has_filter("upper") and not hooks.has_action("body")
    assert hooks.apply_filters("upper", "hello") == "hello"


def test_without_hooks_subscribe_nothing_is_wired(make_bundle, django_capture_on_commit_callbacks) -> None:  # type: ignore[no-untyped-def]
    bundle = make_bundle(capabilities=["kv"], optionalCapabilities=["hooks.subscribe"], hooks=HOOKS)
    lifecycle.install(bundle, ["kv", "hooks.subscribe"], "tests", activate=True)
    registry.sync(force=True)
    assert hooks.apply_filters("upper", "hello") == "HELLO"
    with django_capture_on_commit_callbacks(execute=True):
        lifecycle.revoke("demo", "hooks.subscribe", "tests")  # optional: the plugin stays active
    registry.maybe_sync()
    assert registry.get("demo") is not None
    assert hooks.apply_filters("upper", "hello") == "hello"
    assert not hooks.has_filter("upper")


def test_a_fault_never_breaks_the_page(active, caplog) -> None:  # type: ignore[no-untyped-def]
    before = bridge.HOOK_FAULTS.labels("demo", "panic", "trap")._value.get()
    with caplog.at_level(logging.WARNING, logger="gonext_plugins.bridge"):
        assert hooks.apply_filters("panic", "unchanged") == "unchanged"
        assert hooks.do_action("oob") == []  # bad result: action skipped
    assert "plugin demo failed on filter 'panic' (trap)" in caplog.text
    assert "plugin demo failed on action 'oob' (bad_result)" in caplog.text
    assert bridge.HOOK_FAULTS.labels("demo", "panic", "trap")._value.get() == before + 1
    assert sorted(PluginFault.objects.values_list("kind", flat=True)) == ["bad_result", "trap"]


def test_strict_mode_raises_faults(active, settings) -> None:  # type: ignore[no-untyped-def]
    settings.GONEXT_PLUGINS = {**settings.GONEXT_PLUGINS, "RAISE_FAULTS": True}
    with pytest.raises(PluginTrap, match="something broke"):
        hooks.apply_filters("panic", "x")


def test_repeated_faults_quarantine_and_unwire(active, django_capture_on_commit_callbacks) -> None:  # type: ignore[no-untyped-def]
    with django_capture_on_commit_callbacks(execute=True):
        for _ in range(5):
            assert hooks.apply_filters("panic", "v") == "v"
    registry.maybe_sync()
    assert registry.get("demo") is None
    assert not hooks.has_filter("upper")


def test_upgrade_rewires_to_the_new_version(active, make_bundle,  # type: ignore[no-untyped-def]
                                            django_capture_on_commit_callbacks) -> None:
    new_hooks = [{"name": "upper", "kind": "filter", "priority": 1}]
    with django_capture_on_commit_callbacks(execute=True):
        lifecycle.upgrade("demo", make_bundle(version="2.0.0", capabilities=CAPS, hooks=new_hooks), [],
                          "tests")
    registry.maybe_sync()
    [proxy] = registry.get("demo").extras["hook_proxies"]
    assert hooks.has_filter("upper", proxy) == 1
    assert not hooks.has_action("body")
    assert hooks.apply_filters("upper", "abc") == "ABC"


def test_async_twins_call_plugins(active) -> None:  # type: ignore[no-untyped-def]
    async def main() -> tuple[object, object]:
        return await hooks.aapply_filters("upper", "async"), await hooks.ado_action("body")

    assert asyncio.run(main()) == ("ASYNC", [{"html": ""}])


class CountedArg:
    """A hook argument that counts how often it is turned into JSON."""

    def __init__(self) -> None:
        self.encodes = 0

    def to_plugin_json(self) -> dict[str, int]:
        self.encodes += 1
        return {"n": 7}


@pytest.fixture
def three_plugins(make_bundle):  # type: ignore[no-untyped-def]
    for slug in ("one", "two", "three"):
        lifecycle.install(make_bundle(slug=slug, capabilities=CAPS, hooks=HOOKS), CAPS, "tests",
                          activate=True)
    registry.sync(force=True)


def test_an_action_encodes_its_arguments_once_for_all_plugins(three_plugins) -> None:  # type: ignore[no-untyped-def]
    arg = CountedArg()
    envelopes = hooks.do_action("echo", arg, "x")
    assert envelopes == [{"kind": "action", "hook": "echo", "args": [{"n": 7}, "x"]}] * 3
    assert arg.encodes == 1
    hooks.do_action("echo", arg, "x")
    assert arg.encodes == 2  # once per run: a later run sees the object as it is then


def test_a_filter_encodes_its_extra_arguments_once_while_the_value_changes(three_plugins) -> None:  # type: ignore[no-untyped-def]
    arg = CountedArg()
    with hooks.register_temporarily("upper", lambda value, extra: value + "-py", 15):
        assert hooks.apply_filters("upper", "a", arg) == "A-PY"
    assert arg.encodes == 1


def test_an_action_on_a_filter_chain_sees_each_steps_value(three_plugins) -> None:  # type: ignore[no-untyped-def]
    """An action-kind proxy on a filter chain gets the running value as its argument, and the value
    changes from step to step (here each echo's envelope becomes the next one's value): what was
    encoded for one step is never reused for the next."""
    def envelope(arg: object) -> dict[str, object]:
        return {"kind": "action", "hook": "echo", "args": [arg]}

    assert hooks.apply_filters("echo", "v") == envelope(envelope(envelope("v")))


def _generation_reads(queries: list[dict[str, str]]) -> int:
    return sum('"gonext_plugins_generation"' in query["sql"] for query in queries)


def test_a_page_checks_for_plugin_changes_once_however_many_hooks_it_runs(  # type: ignore[no-untyped-def]
        three_plugins, client, settings) -> None:
    """With a zero interval every check reads the generation; the post page runs wp_head and
    the_content through three plugins, yet the request reads it once, when it starts."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    settings.GONEXT_PLUGINS = {**settings.GONEXT_PLUGINS, "SYNC_INTERVAL": 0}
    registry.sync(force=True)  # the next check is due at once from now on
    post = Post.objects.create(title="T", slug="t", body="B")
    before = hooks.did_action("wp_head")
    with CaptureQueriesContext(connection) as queries:
        assert client.get(post.get_absolute_url()).status_code == 200
    assert hooks.did_action("wp_head") == before + 1
    assert _generation_reads(queries.captured_queries) == 1
    with CaptureQueriesContext(connection) as queries:  # outside a request: each dispatch checks
        hooks.do_action("wp_head")
        hooks.apply_filters("the_content", "x")
    assert _generation_reads(queries.captured_queries) == 2


def test_a_change_committed_during_a_request_applies_within_it(  # type: ignore[no-untyped-def]
        make_bundle, django_capture_on_commit_callbacks) -> None:
    """The once-per-request check never hides a change this process committed itself."""
    from django.core.signals import request_finished, request_started

    request_started.send(sender=None)
    try:
        assert not hooks.has_filter("upper")
        with django_capture_on_commit_callbacks(execute=True):
            lifecycle.install(make_bundle(capabilities=CAPS, hooks=HOOKS), CAPS, "tests", activate=True)
        assert hooks.apply_filters("upper", "a") == "A"
    finally:
        request_finished.send(sender=None)


def test_a_filter_that_leaves_safe_markup_alone_hands_it_back_as_it_was(make_bundle) -> None:  # type: ignore[no-untyped-def]
    """A plugin filter with no body changes nothing: the site's own trusted markup is passed on as
    it was, not run through the sanitizer (which would strip the site's script); a changed value is
    still sanitized."""
    from django.utils.safestring import SafeData, mark_safe

    hooks_ = [{"name": "nobody", "kind": "filter"}, {"name": "upper", "kind": "filter"}]
    lifecycle.install(make_bundle(capabilities=CAPS, hooks=hooks_), CAPS, "tests", activate=True)
    registry.sync(force=True)
    trusted = mark_safe('<p>hi</p><script>site()</script>')
    assert hooks.apply_filters("nobody", trusted) is trusted
    changed = hooks.apply_filters("upper", mark_safe("<b>x</b><script>y()</script>"))
    assert isinstance(changed, SafeData) and changed == "<b>X</b>"


def test_a_declared_hook_the_guest_does_not_handle_is_a_recorded_fault(make_bundle) -> None:  # type: ignore[no-untyped-def]
    """The manifest says the plugin takes part in the hook and the guest answers "unknown hook": the
    author's bug, so it is recorded like a bad result (its log line, the faults list) instead of
    showing only in the server's log, where a plugin author watching `plugin dev` never saw it."""
    hooks_ = [{"name": "unheard_of", "kind": "filter"}]
    lifecycle.install(make_bundle(capabilities=CAPS, hooks=hooks_), CAPS, "tests", activate=True)
    registry.sync(force=True)
    assert hooks.apply_filters("unheard_of", "v") == "v"
    assert list(PluginFault.objects.values_list("kind", "hook")) == [("unknown_hook", "unheard_of")]


def test_faults_of_a_replaced_version_do_not_count_toward_quarantine(
        active, make_bundle, django_capture_on_commit_callbacks) -> None:  # type: ignore[no-untyped-def]
    """Four faults of 1.0.0, then a fixed 2.0.0 faults once: 2.0.0 has one fault, not five (a dev
    loop's next build was quarantined at its first fault by the faults of the builds before)."""
    with django_capture_on_commit_callbacks(execute=True):
        for _ in range(4):
            hooks.apply_filters("panic", "v")
        lifecycle.upgrade("demo", make_bundle(version="2.0.0", capabilities=CAPS, hooks=HOOKS), [], "tests")
    registry.maybe_sync()
    with django_capture_on_commit_callbacks(execute=True):
        assert hooks.apply_filters("panic", "v") == "v"
    registry.maybe_sync()
    assert Plugin.objects.get(slug="demo").state == PluginState.ACTIVE
    assert registry.get("demo") is not None


def test_a_stored_manifest_is_validated_once_per_process(active) -> None:  # type: ignore[no-untyped-def]
    """The registry reads every active plugin's manifest on each generation change: the second read
    of the same stored manifest is the first one's result, and a changed one is validated anew."""
    from gonext_plugins.lifecycle import manifest_of
    from gonext_plugins.models import PluginVersion

    version = PluginVersion.objects.get(plugin__slug="demo")
    first = manifest_of(version)
    assert manifest_of(PluginVersion.objects.get(pk=version.pk)) is first
    version.manifest = {**version.manifest, "description": "Changed."}
    changed = manifest_of(version)
    assert changed is not first and changed.description == "Changed."
