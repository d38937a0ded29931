"""Many threads on one plugin: every result right, never two calls in one instance at once.

The fast dispatcher releases the GIL only while guest code runs (or not at all, for a plugin whose
calls are short: gil_policy "adaptive"), and the pool hands out idle instances without a lock; these
tests hammer both, under both policies, with real threads and a real guest that returns an error if
it is ever entered while a call is already inside it (``exclusive_guest.wat``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from gonext_plugins.errors import PluginClosed
from gonext_plugins.runtime import Limits, Runtime
from gonext_plugins.runtime.metrics import existing_stats

from .conftest import require_fast_dispatcher, wat

THREADS = 8
CALLS = 150


@pytest.fixture(params=["adaptive", "release"])
def fast_rt(request: pytest.FixtureRequest) -> Iterator[Runtime]:
    """Both GIL policies: under "adaptive" the calls soon run with the GIL held."""
    require_fast_dispatcher()
    runtime = Runtime(dispatcher="fast", gil_policy=request.param)
    yield runtime
    runtime.close()


@pytest.mark.parametrize("max_instances", [1, 3, THREADS])
def test_threads_get_their_own_results_and_never_share_an_instance(fast_rt: Runtime,
                                                                    max_instances: int) -> None:
    name = f"exclusive-{max_instances}"
    plugin = fast_rt.load(wat("exclusive_guest"), name=name,
                          limits=Limits(max_instances=max_instances, checkout_timeout_ms=60_000))
    stats = existing_stats(name)
    assert stats is not None
    checkouts_before, calls_before = stats.checkouts, stats.call_count()
    start = threading.Barrier(THREADS)

    def work(thread: int) -> list[str]:
        start.wait()
        wrong = []
        for i in range(CALLS):
            value = {"thread": thread, "call": i, "text": "é" * (i % 7)}
            got = plugin.invoke_filter("the_content", value, thread)
            if got != value:
                wrong.append(f"thread {thread} call {i} got {got!r}")
        return wrong

    with ThreadPoolExecutor(THREADS) as executor:
        wrong = [line for lines in executor.map(work, range(THREADS)) for line in lines]
    assert wrong == []  # a guest entered twice returns an error, which raises HookError instead
    policy = plugin.gil_policy
    assert (policy is not None and policy.hold) == (fast_rt.gil_policy == "adaptive")  # held calls ran
    pool = plugin.pool
    assert pool.in_use == 0 and pool.idle == pool.size and 1 <= pool.size <= max_instances
    stats.settled()  # the checkins queued since the read above
    assert stats.checkouts - checkouts_before == THREADS * CALLS
    assert stats.call_count() - calls_before == THREADS * CALLS


def test_close_and_eviction_while_threads_hammer(fast_rt: Runtime) -> None:
    """close() and evict_idle() race the lock-free checkout: each call either returns its own value
    or is refused with PluginClosed, and the pool's counts end consistent, nothing handed out twice."""
    plugin = fast_rt.load(wat("exclusive_guest"), name="exclusive-close",
                          limits=Limits(max_instances=4, min_instances=1, idle_seconds=1))
    pool = plugin.pool
    started = threading.Barrier(THREADS + 1)
    closed_seen = [0] * THREADS
    ok = [0] * THREADS
    wrong: list[str] = []

    def work(thread: int) -> None:
        started.wait()
        for i in range(1_000_000):  # until refused; the bound only keeps a broken close() finite
            try:
                got = plugin.invoke_filter("the_content", [thread, i])
            except PluginClosed:
                closed_seen[thread] += 1
                return
            if got != [thread, i]:
                wrong.append(f"{thread}/{i}: {got!r}")
            ok[thread] += 1

    threads = [threading.Thread(target=work, args=(t,)) for t in range(THREADS)]
    for thread in threads:
        thread.start()
    started.wait()
    for _ in range(50):  # evict everything idle, again and again, while calls run
        pool.evict_idle(time.monotonic() + 3600)
        time.sleep(0.001)
    assert pool.close(timeout=30) is True
    for thread in threads:
        thread.join(30)
    assert wrong == []
    assert sum(ok) > 0 and all(closed_seen)  # every thread ran, then was refused
    assert pool.size == 0 and pool.in_use == 0 and pool.idle == 0
