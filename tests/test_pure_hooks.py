"""Hooks a manifest declares ``"pure": true``: a repeated input is answered with the remembered
result, and only a call the host saw stay pure is remembered (``runtime.results``).

``tests/guests/pure_guest.wat`` (from ABI.md alone) counts its calls and answers ``{"n": D}``, D the
call count modulo 10: an answer from remembered results repeats an old D, a real call shows the next.
Every plugin here is installed, granted and activated through ``lifecycle`` and called through the
registry's ``LoadedPlugin``, as a page's hook would; settings change through ``lifecycle.settings``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
import pytest
from prometheus_client import REGISTRY

from gonext_plugins import capabilities, hooks, host_functions, lifecycle, manifest
from gonext_plugins.errors import HookError, ManifestError, PluginClosed, PluginError
from gonext_plugins.registry import LoadedPlugin, registry
from gonext_plugins.runtime.results import ENTRY_OVERHEAD, MISSING, PureResults
from tests.conftest import guest_wasm, make_manifest

pytestmark = pytest.mark.django_db

SETTINGS = {"type": "object", "properties": {"greeting": {"type": "string", "default": "hello"}}}


@pytest.fixture
def plugin(make_bundle, activated, settings) -> Callable[..., LoadedPlugin]:  # type: ignore[no-untyped-def]
    """``plugin(*hook_names, pure=True, caps=("hooks.subscribe", "kv"))``: the pure guest, active,
    with each hook an action (declared pure or not). One instance, so its call counter is the
    plugin's."""
    settings.GONEXT_PLUGINS = {**settings.GONEXT_PLUGINS, "MIN_INSTANCES": 1, "MAX_INSTANCES": 1}

    def factory(*names: str, pure: bool = True,
                caps: tuple[str, ...] = ("hooks.subscribe", "kv")) -> LoadedPlugin:
        hooks_declared = [{"name": name, "kind": "action", "pure": pure} for name in names]
        bundle = make_bundle(wasm=guest_wasm("pure_guest"), hooks=hooks_declared, capabilities=list(caps),
                             settings=SETTINGS)
        loaded: LoadedPlugin = activated(bundle, caps)
        return loaded

    return factory


def run(loaded: LoadedPlugin, hook: str, *args: Any) -> Any:
    return loaded.invoke("action", hook, *args)


def guest_calls(loaded: LoadedPlugin) -> int:
    """How many guest calls the plugin's instances served (a remembered answer makes none)."""
    return loaded.runtime_plugin._metrics.stats.settled().checkouts


def test_a_repeated_input_is_answered_from_the_remembered_result(plugin) -> None:  # type: ignore[no-untyped-def]
    loaded = plugin("n")
    before = guest_calls(loaded)
    reused = REGISTRY.get_sample_value("gonext_plugin_results_reused_total", {"plugin": "demo"}) or 0
    assert run(loaded, "n", "post 1") == {"n": 1}
    assert run(loaded, "n", "post 1") == {"n": 1}  # the guest did not run: its counter says so
    assert run(loaded, "n", "post 2") == {"n": 2}  # another input is another call
    assert run(loaded, "n", "post 1") == {"n": 1}
    assert run(loaded, "n", "post 1", "more") == {"n": 3}  # every argument is part of the input
    assert guest_calls(loaded) - before == 3
    assert len(loaded.runtime_plugin.results) == 3
    assert REGISTRY.get_sample_value("gonext_plugin_results_reused_total", {"plugin": "demo"}) - reused == 2


def test_each_answer_is_a_fresh_object(plugin) -> None:  # type: ignore[no-untyped-def]
    """The remembered result is the guest's bytes: a caller changing what it got changes nothing
    for the next request."""
    loaded = plugin("n")
    first = run(loaded, "n", "x")
    first["n"] = "changed by a site"
    assert run(loaded, "n", "x") == {"n": 1}


def test_a_hook_not_declared_pure_runs_every_time(plugin) -> None:  # type: ignore[no-untyped-def]
    loaded = plugin("n", pure=False)
    assert [run(loaded, "n", "same")["n"] for _ in range(3)] == [1, 2, 3]
    assert len(loaded.runtime_plugin.results) == 0


@pytest.mark.parametrize("hook", ["log", "time", "kv"])
def test_a_call_the_host_saw_reach_outside_is_not_remembered(plugin, hook: str) -> None:  # type: ignore[no-untyped-def]
    """A log line, the clock, a host function that is not pure (kv.get): the result may differ next
    time, or the call had an effect a remembered answer would skip, so each call runs."""
    loaded = plugin(hook)
    assert [run(loaded, hook, "same")["n"] for _ in range(3)] == [1, 2, 3]
    assert len(loaded.runtime_plugin.results) == 0


def test_a_denied_host_call_is_not_pure_either(plugin) -> None:  # type: ignore[no-untyped-def]
    loaded = plugin("kv", caps=("hooks.subscribe",))  # kv.get answers "capability denied"
    assert [run(loaded, "kv", "same")["n"] for _ in range(2)] == [1, 2]


def test_settings_get_keeps_a_call_pure_and_new_settings_forget_its_results(
        plugin, django_capture_on_commit_callbacks) -> None:  # type: ignore[no-untyped-def]
    loaded = plugin("settings")
    assert run(loaded, "settings", "p") == {"n": 1}
    assert run(loaded, "settings", "p") == {"n": 1}
    with django_capture_on_commit_callbacks(execute=True):
        lifecycle.settings.update("demo", {"greeting": "hi there"}, "tests")
    registry.sync(force=True)
    current = registry.get("demo")
    assert current is loaded  # the same loaded plugin: only its settings changed
    assert run(loaded, "settings", "p") == {"n": 2}  # computed again, with the new settings
    assert run(loaded, "settings", "p") == {"n": 2}


def test_the_same_settings_again_forget_nothing(plugin) -> None:  # type: ignore[no-untyped-def]
    loaded = plugin("n")
    run(loaded, "n", "p")
    loaded.settings = dict(loaded.settings)  # equal values (the registry reassigns them on each sync)
    assert run(loaded, "n", "p") == {"n": 1}


@pytest.mark.parametrize(("old", "new"), [(1, 1.0), (1, True), ({"a": 1}, {"a": 1.0})])
def test_settings_equal_in_python_but_not_in_json_forget_the_results(plugin, old: Any, new: Any) -> None:  # type: ignore[no-untyped-def]
    loaded = plugin("n")
    loaded.settings = {"greeting": old}
    run(loaded, "n", "p")
    loaded.settings = {"greeting": new}  # == the old ones, but settings.get would answer otherwise
    assert run(loaded, "n", "p") == {"n": 2}


@pytest.fixture
def pure_kv_get():  # type: ignore[no-untyped-def]
    """``kv.get`` registered as a pure host function answering ``answer()`` (a site's own pure
    function, for the refusal paths); the built-in one is back afterwards."""
    answers: list[Any] = [{"found": False, "value": None}]

    def answer(plugin: Any, payload: Any) -> Any:
        if isinstance(answers[0], Exception):
            raise answers[0]
        return answers[0]

    capabilities.host_function("kv.get", capability="kv", pure=True)(answer)
    yield answers
    host_functions.register_all()


def test_a_pure_host_function_keeps_the_call_pure_only_when_it_answers(plugin, pure_kv_get) -> None:  # type: ignore[no-untyped-def]
    loaded = plugin("kv")
    assert [run(loaded, "kv", "a")["n"] for _ in range(2)] == [1, 1]  # answered: remembered
    pure_kv_get[0] = RuntimeError("the database is down")
    assert [run(loaded, "kv", "b")["n"] for _ in range(2)] == [2, 3]  # failed: never remembered
    pure_kv_get[0] = PluginError("refused")
    assert [run(loaded, "kv", "c")["n"] for _ in range(2)] == [4, 5]


def test_a_denied_pure_host_function_taints_the_call(plugin, pure_kv_get) -> None:  # type: ignore[no-untyped-def]
    loaded = plugin("kv", caps=("hooks.subscribe",))
    assert [run(loaded, "kv", "a")["n"] for _ in range(2)] == [1, 2]


def test_a_closed_plugin_answers_nothing_from_memory(plugin) -> None:  # type: ignore[no-untyped-def]
    loaded = plugin("n")
    run(loaded, "n", "p")
    loaded.runtime_plugin.close()
    with pytest.raises(PluginClosed):
        run(loaded, "n", "p")
    assert len(loaded.runtime_plugin.results) == 0


def test_changed_grants_forget_the_results(plugin) -> None:  # type: ignore[no-untyped-def]
    loaded = plugin("n")
    run(loaded, "n", "p")
    loaded.runtime_plugin.capabilities = loaded.capabilities - {"kv"}
    assert run(loaded, "n", "p") == {"n": 2}


def test_errors_are_not_remembered_and_no_body_is(plugin) -> None:  # type: ignore[no-untyped-def]
    loaded = plugin("error", "no_body")
    before = guest_calls(loaded)
    for _ in range(2):
        with pytest.raises(HookError) as caught:
            run(loaded, "error", "p")
        assert caught.value.status == "error"
    assert guest_calls(loaded) - before == 2
    assert run(loaded, "no_body", "p") is None and run(loaded, "no_body", "p") is None
    assert guest_calls(loaded) - before == 3


def test_a_site_can_turn_the_reuse_off(plugin, settings) -> None:  # type: ignore[no-untyped-def]
    settings.GONEXT_PLUGINS = {**settings.GONEXT_PLUGINS, "PURE_RESULT_BYTES": 0}
    loaded = plugin("n")
    assert [run(loaded, "n", "same")["n"] for _ in range(2)] == [1, 2]


def test_through_the_hook_bus(plugin) -> None:  # type: ignore[no-untyped-def]
    """What a page sees: do_action collects the body, the same on the repeat."""
    plugin("n")
    assert hooks.do_action("n", "post") == [{"n": 1}]
    assert hooks.do_action("n", "post") == [{"n": 1}]
    assert hooks.do_action("n", "other post") == [{"n": 2}]


# --- the manifest and the API -------------------------------------------------------------------


def test_the_manifest_takes_a_boolean_only() -> None:
    declared = manifest.validate(make_manifest(hooks=[{"name": "wp_head", "kind": "action", "pure": True},
                                                      {"name": "the_content", "kind": "filter"}]))
    assert [hook.pure for hook in declared.hooks] == [True, False]
    with pytest.raises(ManifestError) as caught:
        manifest.validate(make_manifest(hooks=[{"name": "wp_head", "kind": "action", "pure": "yes"}]))
    assert "$.hooks[0].pure" in dict(caught.value.problems)


def test_the_api_says_which_hooks_are_pure(plugin, admin_client) -> None:  # type: ignore[no-untyped-def]
    plugin("n")
    hooks_shown = admin_client.get("/api/plugins/demo/").json()["hooks"]
    assert hooks_shown == [{"name": "n", "kind": "action", "priority": 10, "pure": True}]


# --- the store itself ---------------------------------------------------------------------------


def test_the_oldest_results_go_first_within_the_byte_budget() -> None:
    entry = 100 + 50 + ENTRY_OVERHEAD
    results = PureResults(max_bytes=entry * 8)  # an eighth of it: exactly one entry
    for i in range(9):
        results.put(b"p%02d" % i + b"x" * 97, b"b" * 50, results.generation)
    assert len(results) == 8 and results.size_bytes == 8 * entry
    assert results.get(b"p00" + b"x" * 97) is MISSING and results.get(b"p08" + b"x" * 97) == b"b" * 50


def test_a_result_answered_from_gets_a_second_chance_over_older_and_newer_ones() -> None:
    """The post everyone reads was stored first; first in, first out would evict it first. Answered
    from since it was stored, it moves to the back instead, and the oldest unread entry goes; once
    passed over, it must be read again to be spared again. (``in`` looks without reading.)"""
    entry = 100 + 50 + ENTRY_OVERHEAD
    results = PureResults(max_bytes=entry * 8)
    key = [b"p%02d" % i + b"x" * 97 for i in range(16)]
    for k in key[:8]:
        results.put(k, b"b" * 50, results.generation)
    assert results.get(key[0]) == b"b" * 50  # the popular one, read
    results.put(key[8], b"b" * 50, results.generation)  # full: p00 is spared, p01 goes
    assert key[0] in results and key[1] not in results
    results.put(key[9], b"b" * 50, results.generation)  # p00 not read since it was passed over
    assert key[0] in results and key[2] not in results  # but it stands behind p03..p07 now
    for k in key[10:15]:
        results.put(k, b"b" * 50, results.generation)  # p03..p07 go
    assert key[0] in results
    results.put(key[15], b"b" * 50, results.generation)
    assert key[0] not in results and len(results) == 8
    for k in key[8:16]:
        results.get(k)  # all read: one pass clears every flag, then the oldest goes
    results.put(key[0], b"b" * 50, results.generation)
    assert key[8] not in results and len(results) == 8 and results.size_bytes == 8 * entry


def test_one_put_spares_a_bounded_number_of_read_entries() -> None:
    """A crawl reads every remembered result; the next put must not sweep the whole store under the
    lock: it spares at most SECOND_CHANCES_PER_PUT of them, then the oldest goes regardless."""
    from gonext_plugins.runtime.results import SECOND_CHANCES_PER_PUT

    entry = 100 + 50 + ENTRY_OVERHEAD
    count = 8 * SECOND_CHANCES_PER_PUT
    results = PureResults(max_bytes=entry * count)
    key = [b"p%04d" % i + b"x" * 95 for i in range(count + 1)]
    for k in key[:count]:
        results.put(k, b"b" * 50, results.generation)
    for k in key[:count]:
        results.get(k)
    results.put(key[count], b"b" * 50, results.generation)
    spared = SECOND_CHANCES_PER_PUT
    assert [k in results for k in key[:spared + 2]] == [True] * spared + [False, True]
    assert len(results) == count and results.size_bytes == count * entry


def test_an_entry_over_an_eighth_of_the_budget_is_not_kept() -> None:
    results = PureResults(max_bytes=8_000)
    results.put(b"p" * 1000, b"b" * 1000, results.generation)
    assert len(results) == 0


def test_a_call_that_began_before_forget_cannot_store_after_it() -> None:
    results = PureResults(max_bytes=1 << 20)
    began = results.generation
    results.forget()  # new settings arrived while the call ran
    results.put(b"payload", b"old answer", began)
    assert results.get(b"payload") is MISSING
    results.put(b"payload", None, results.generation)  # "no body" is an answer too
    assert results.get(b"payload") is None


def test_the_key_is_the_exact_payload(plugin) -> None:  # type: ignore[no-untyped-def]
    """Arguments equal in Python but different in JSON (1 and 1.0, True and 1) are different inputs."""
    loaded = plugin("n")
    assert run(loaded, "n", 1) == {"n": 1}
    assert run(loaded, "n", 1.0) == {"n": 2}
    assert run(loaded, "n", True) == {"n": 3}
    assert orjson.dumps(1) != orjson.dumps(1.0)
