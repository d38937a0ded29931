"""Fuel, deadlines, memory caps and the soft-timeout warning."""

from __future__ import annotations

import time

import pytest
from prometheus_client import REGISTRY

from gonext_plugins.errors import PluginTimeout, PluginTrap
from gonext_plugins.runtime import Limits, Runtime

from .conftest import LogRecorder, wat


def _sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_tight_loop_is_stopped_by_fuel(rt: Runtime) -> None:
    plugin = rt.load(wat("abi_guest"), name="fuel", limits=Limits(fuel=1_000_000))
    with pytest.raises(PluginTrap, match="out of fuel") as info:
        plugin.call("spin")
    assert not isinstance(info.value, PluginTimeout)
    assert plugin.call("add", 1, 2) == 3


def test_with_fuel_off_the_hard_deadline_stops_the_loop(dispatcher: str) -> None:
    limits = Limits(fuel=None, soft_timeout_ms=None, hard_timeout_ms=200)
    with Runtime(limits=limits, dispatcher=dispatcher) as runtime:  # type: ignore[arg-type]
        plugin = runtime.load(wat("abi_guest"), name="deadline")
        before = _sample("gonext_plugin_traps_total", plugin="deadline", kind="timeout")
        started = time.monotonic()
        with pytest.raises(PluginTimeout, match="hard_timeout_ms=200"):
            plugin.invoke_action("loop")
        # The loop never ends by itself: the timeout is the deadline, and not before it. (No upper
        # bound: a loaded machine stretches wall-clock time; the trap's kind and message are the proof.)
        assert time.monotonic() - started >= 0.19
        assert _sample("gonext_plugin_traps_total", plugin="deadline", kind="timeout") == before + 1
        assert plugin.invoke_filter("upper", "next") == "NEXT"


def test_memory_grow_past_the_cap_returns_minus_one_in_the_guest(rt: Runtime) -> None:
    plugin = rt.load(wat("abi_guest"), name="grow", limits=Limits(memory_pages=4))
    assert plugin.call("pages") == 2
    assert plugin.call("grow", 3) == -1  # 5 pages > 4
    assert plugin.call("grow", 2) == 2  # exactly to the cap: the old size comes back
    assert plugin.call("grow", 1) == -1
    assert plugin.call("pages") == 4


def test_soft_timeout_warning_reaches_the_log_sink(dispatcher: str, logs: LogRecorder) -> None:
    limits = Limits(fuel=None, soft_timeout_ms=20, hard_timeout_ms=2000)
    with Runtime(limits=limits, log_sink=logs, dispatcher=dispatcher) as runtime:  # type: ignore[arg-type]
        plugin = runtime.load(wat("abi_guest"), name="soft")
        before = _sample("gonext_plugin_soft_timeouts_total", plugin="soft")
        assert plugin.call("busy", 0) == 0
        assert logs.lines == []
        n = 300_000_000  # about 100 ms here: well past 20 ms, far from the hard deadline
        started = time.monotonic()
        assert plugin.call("busy", n) == n
        assert time.monotonic() - started > 0.04
    warnings = [line for line in logs.lines if line[3] == "host" and "soft_timeout_ms=20" in line[2]]
    assert warnings, logs.lines
    assert warnings[0][0] == "soft" and warnings[0][1] == 2
    assert _sample("gonext_plugin_soft_timeouts_total", plugin="soft") >= before + 1


def test_a_trapped_instance_is_discarded(rt: Runtime) -> None:
    plugin = rt.load(wat("abi_guest"), name="discard", limits=Limits(min_instances=1, max_instances=1))
    plugin.invoke_action("nobody")
    assert plugin.call("hooks") == 1
    before = _sample("gonext_plugin_pool_recycle_total", plugin="discard", reason="trap")
    with pytest.raises(PluginTrap):
        plugin.invoke_action("panic")
    assert _sample("gonext_plugin_pool_recycle_total", plugin="discard", reason="trap") == before + 1
    assert plugin.call("hooks") == 0  # a fresh instance
    assert plugin.pool.size == 1
