"""The host-call path (``gn_host_call`` -> trampoline -> host function -> ``gn_alloc`` -> result):
every call arrives and comes back, on both dispatchers and under both GIL policies, including when
the guest runs keeping the GIL (the adaptive policy's held calls) and when placing the result grows
memory past the size the host read before the host function ran."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from gonext_plugins.errors import HookError, PluginTimeout, PluginTrap
from gonext_plugins.runtime import Limits, Plugin, Runtime
from gonext_plugins.runtime.gil import HOLD_AFTER_SHORT_CALLS

from .conftest import LogRecorder, wat

LOOP_CALLS = 100  # host calls per hook call of hostcall_loop.wat


@pytest.fixture(params=["adaptive", "release"])
def policy_rt(request: pytest.FixtureRequest, dispatcher: str, logs: LogRecorder) -> Iterator[Runtime]:
    runtime = Runtime(limits=Limits(fuel=50_000_000, hard_timeout_ms=5_000), log_sink=logs,
                      dispatcher=dispatcher, gil_policy=request.param)  # type: ignore[arg-type]
    yield runtime
    runtime.close()


def _held(plugin: Plugin) -> bool:
    """Whether the plugin's guest calls now keep the GIL (only the fast dispatcher, adaptive)."""
    return plugin.gil_policy is not None and plugin.gil_policy.hold


def test_every_host_call_reaches_the_function_and_its_result_reaches_the_guest(policy_rt: Runtime) -> None:
    calls: list[Any] = []

    def count(plugin: Any, payload: Any) -> Any:
        calls.append(payload)
        return {"n": len(calls), "plugin": plugin.name}

    policy_rt.host_functions.register("test.count", "test", count)
    plugin = policy_rt.load(wat("hostcall_loop"), name="loop", capabilities={"test"})
    hooks = HOLD_AFTER_SHORT_CALLS + 4
    for _ in range(hooks):
        assert plugin.invoke_action("test.count") is None  # (0, -1) would be a HookError
    assert calls == [{}] * (LOOP_CALLS * hooks)
    adaptive_fast = policy_rt.gil_policy == "adaptive"
    assert _held(plugin) is adaptive_fast  # the last calls ran keeping the GIL exactly when they may


def test_a_denied_or_unknown_function_ends_the_loop_as_the_guests_error(policy_rt: Runtime) -> None:
    plugin = policy_rt.load(wat("hostcall_loop"), name="loop")
    policy_rt.host_functions.register("test.count", "test", lambda plugin, payload: {})
    for name in ("test.count", "no.such"):  # -5 and -6: the guest answers (0, -1)
        with pytest.raises(HookError) as info:
            plugin.invoke_action(name)
        assert info.value.status == "error", info.value


@pytest.mark.parametrize("size", [10, 70_000, 900_000])
def test_a_result_larger_than_memory_grows_it_and_arrives_whole(policy_rt: Runtime, size: int) -> None:
    """gn_alloc grows memory to place the result: the host checks against the size after it."""
    def big(plugin: Any, payload: Any) -> Any:
        return {"text": "x" * payload["n"]}

    policy_rt.host_functions.register("test.big", "test", big)
    plugin = policy_rt.load(wat("hostcall_guest"), name="big", capabilities={"test"})
    for _ in range(HOLD_AFTER_SHORT_CALLS + 2):
        assert plugin.invoke_filter("test.big", {"n": size}) == {"text": "x" * size}


def test_a_trap_in_gn_alloc_placing_a_result_keeps_its_reason_under_both_policies(policy_rt: Runtime) -> None:
    policy_rt.host_functions.register("echo", "test.echo", lambda plugin, payload: {"echo": payload})
    plugin = policy_rt.load(wat("alloc_trap_guest"), name="alloc", capabilities={"test.echo"})
    with pytest.raises(PluginTrap) as info:
        plugin.invoke_action("u")
    assert info.value.message.startswith("guest trapped in gn_alloc during a host call: ")
    assert "unreachable" in info.value.message
    assert info.value.frames and info.value.frames[0].startswith("gn_alloc@"), info.value.frames


@pytest.mark.parametrize("gil_policy", ["adaptive", "release"])
def test_an_endless_gn_alloc_placing_a_result_meets_the_deadline_without_fuel(gil_policy: str,
                                                                              logs: LogRecorder) -> None:
    """With fuel off only the epoch stops it: gn_alloc keeps the GIL only where a native timer
    advances the epoch (adaptive), so a Python ticker is never starved."""
    runtime = Runtime(limits=Limits(fuel=None, hard_timeout_ms=300), log_sink=logs,
                      gil_policy=gil_policy)  # type: ignore[arg-type]
    try:
        runtime.host_functions.register("echo", "test.echo", lambda plugin, payload: {"echo": payload})
        plugin = runtime.load(wat("alloc_trap_guest"), name="alloc", capabilities={"test.echo"})
        with pytest.raises(PluginTimeout) as info:
            plugin.invoke_action("f")
        assert "gn_alloc" in info.value.message
    finally:
        runtime.close()
