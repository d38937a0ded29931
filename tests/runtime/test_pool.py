"""The instance pool under concurrency, rotation, eviction and close."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from prometheus_client import REGISTRY

from gonext_plugins.errors import PluginClosed, PoolTimeout
from gonext_plugins.runtime import Limits, Runtime
from gonext_plugins.runtime.metrics import existing_stats

from .conftest import wat


def test_16_threads_by_64_calls_on_one_plugin(rt: Runtime) -> None:
    plugin = rt.load(wat("abi_guest"), name="threads", limits=Limits(max_instances=4))

    def work(t: int) -> list[bool]:
        return [plugin.invoke_filter("upper", f"thread {t} call {i} abc") == f"THREAD {t} CALL {i} ABC"
                for i in range(64)]

    with ThreadPoolExecutor(16) as pool:
        results = [ok for oks in pool.map(work, range(16)) for ok in oks]
    assert len(results) == 16 * 64 and all(results)
    assert plugin.pool.in_use == 0 and 1 <= plugin.pool.size <= 4


def test_100_threads_by_100_checkouts_leave_the_pool_consistent(slow_rt: Runtime) -> None:
    plugin = slow_rt.load(wat("minimal"), name="churn",
                          limits=Limits(max_instances=4, max_uses=37, checkout_timeout_ms=60_000))
    pool = plugin.pool
    holders: set[int] = set()
    lock = threading.Lock()
    errors: list[str] = []

    def work(_: int) -> None:
        for _ in range(100):
            inst = pool.checkout()
            with lock:
                if id(inst) in holders:
                    errors.append("instance handed to two threads")
                holders.add(id(inst))
                if len(holders) > 4:
                    errors.append("more than max_instances out")
            with lock:
                holders.discard(id(inst))
            pool.checkin(inst)

    with ThreadPoolExecutor(100) as executor:
        list(executor.map(work, range(100)))
    assert errors == []
    assert pool.in_use == 0
    assert pool.size == pool.idle
    assert 1 <= pool.size <= 4
    assert REGISTRY.get_sample_value("gonext_plugin_pool_in_use", {"plugin": "churn"}) == 0
    assert REGISTRY.get_sample_value("gonext_plugin_pool_size", {"plugin": "churn"}) == pool.size
    assert REGISTRY.get_sample_value("gonext_plugin_pool_checkout_total", {"plugin": "churn"}) == 10_000
    retired = REGISTRY.get_sample_value("gonext_plugin_pool_recycle_total",
                                        {"plugin": "churn", "reason": "max_uses"})
    assert (retired or 0) >= 10_000 // 37 - 4


def test_checkout_timeout(slow_rt: Runtime) -> None:
    plugin = slow_rt.load(wat("minimal"), name="busy",
                          limits=Limits(max_instances=1, checkout_timeout_ms=50))
    inst = plugin.pool.checkout()
    started = time.monotonic()
    with pytest.raises(PoolTimeout):
        plugin.invoke_action("x")
    assert time.monotonic() - started > 0.04  # waited for its checkout timeout, not refused at once
    plugin.pool.checkin(inst)
    assert plugin.invoke_action("x") is None


def test_rotation_after_max_uses(slow_rt: Runtime) -> None:
    plugin = slow_rt.load(wat("abi_guest"), name="rotate", limits=Limits(max_uses=3, max_instances=1))
    plugin.invoke_action("nobody")
    plugin.invoke_action("nobody")
    assert plugin.call("hooks") == 2  # third use: the instance is retired after it
    assert plugin.call("hooks") == 0


def test_idle_eviction_goes_back_to_the_minimum(slow_rt: Runtime) -> None:
    plugin = slow_rt.load(wat("minimal"), name="idle",
                          limits=Limits(min_instances=1, max_instances=4, idle_seconds=5))
    pool = plugin.pool
    held = [pool.checkout() for _ in range(3)]
    for inst in held:
        pool.checkin(inst)
    assert pool.size == 3
    assert pool.evict_idle(time.monotonic()) == 0  # not idle long enough
    assert pool.evict_idle(time.monotonic() + 10) == 2
    assert pool.size == 1 and pool.idle == 1


def test_close_during_calls_drains() -> None:
    runtime = Runtime(limits=Limits(fuel=None, soft_timeout_ms=None), dispatcher="slow")
    plugin = runtime.load(wat("abi_guest"), name="drain", limits=Limits(max_instances=4, fuel=None))
    n = 150_000_000  # tens of milliseconds per call
    with ThreadPoolExecutor(4) as executor:
        futures = [executor.submit(plugin.call, "busy", n) for _ in range(4)]
        deadline = time.monotonic() + 5
        while plugin.pool.in_use < 4 and time.monotonic() < deadline:
            time.sleep(0.001)
        assert plugin.pool.in_use == 4
        assert plugin.close() is True
        assert plugin.pool.in_use == 0
        assert [f.result() for f in futures] == [n] * 4
    assert plugin.pool.size == 0
    with pytest.raises(PluginClosed):
        plugin.invoke_action("nobody")
    runtime.close()


def test_runtime_close_refuses_new_calls_and_loads(slow_rt: Runtime) -> None:
    plugin = slow_rt.load(wat("minimal"), name="rtclose")
    slow_rt.close()
    with pytest.raises(PluginClosed):
        plugin.invoke_action("x")
    with pytest.raises(PluginClosed):
        slow_rt.load(wat("minimal"), name="late")


def test_a_checkin_never_waits_for_the_figures_lock_and_no_figure_is_lost(rt: Runtime) -> None:
    """A thread switched out while it records its figures must not make the next checkin wait (with
    the GIL kept through guest calls, that wait handed the GIL to and fro at every call): the
    figures of a checkin that found the lock taken are queued and folded in before anyone reads."""
    plugin = rt.load(wat("abi_guest"), name="figures", limits=Limits(max_instances=2))
    assert plugin.invoke_filter("upper", "warm") == "WARM"
    stats = existing_stats("figures")
    assert stats is not None
    before = stats.checkouts
    calls_before = stats.call_count()
    finished = threading.Event()

    def call_while_the_lock_is_held() -> None:
        for i in range(5):
            assert plugin.invoke_filter("upper", f"x{i}") == f"X{i}"
        finished.set()

    with stats._lock:  # another thread "holds" it for as long as this block lasts
        worker = threading.Thread(target=call_while_the_lock_is_held)
        worker.start()
        assert finished.wait(30), "a checkin waited for the figures lock"
        assert len(stats._pending) == 5  # queued, not lost, not yet counted
        assert plugin.pool.idle >= 1 and plugin.pool.in_use == 0  # the instance went back at once
    worker.join()
    settled = existing_stats("figures")  # a reader folds the queue in first
    assert settled is stats and not stats._pending
    assert stats.checkouts == before + 5 and stats.call_count() == calls_before + 5
