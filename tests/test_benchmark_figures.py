"""The benchmarks' own readings: a figure the README table prints must come from what the runtime
counted, settled (checkins queue their figures), never a stale zero."""

from __future__ import annotations

from benchmarks import runtime as bench


def test_fuel_per_call_is_the_guest_instructions_of_that_call() -> None:
    call, plugin, runtime = bench.gonext("fast")
    try:
        assert call() == bench.EXPECTED
        fuel = bench.fuel_per_call(plugin, call)
        (instance,) = plugin.pool._idle  # the one instance both calls ran on
        assert fuel > 0 and fuel == instance.dispatcher.fuel_used
    finally:
        plugin.close()
        runtime.close()
