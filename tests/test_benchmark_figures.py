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


def test_the_long_guests_run_through_gonext_and_through_wasmtime_alone() -> None:
    """The thread rows' long guests, and their ceiling rows, do the work they are labelled with: a
    whole guest call each, the same loop with or without the host (fuel: one count per instruction)."""
    from gonext_plugins.runtime import Runtime

    runtime = Runtime()
    try:
        for guest in bench.LONG_GUESTS:
            call, plugin = bench.long_plugin(runtime, guest)
            try:
                assert call() is None
                assert bench.fuel_per_call(plugin, call) > 100_000  # a loop, not an early return
            finally:
                plugin.close()
            assert bench.wasmtime_alone(guest)() == 0  # the ABI's "no body"
    finally:
        runtime.close()


def test_one_cpu_pins_the_threads_a_row_starts_and_gives_the_cpus_back() -> None:
    """The pinned thread rows mean what they say only if the row's worker threads, started inside,
    run on that one CPU too; and the rows after them must have every CPU again."""
    import os
    import threading

    before = os.sched_getaffinity(0)
    seen: list[set[int]] = []
    with bench.one_cpu() as cpu:
        assert cpu in before
        worker = threading.Thread(target=lambda: seen.append(os.sched_getaffinity(0)))
        worker.start()
        worker.join()
        assert os.sched_getaffinity(0) == {cpu}
    assert seen == [{cpu}]
    assert os.sched_getaffinity(0) == before
