"""The runtime's Prometheus figures: exported at scrape time from the hot path's plain counters."""

from __future__ import annotations

import threading

from prometheus_client import REGISTRY

from gonext_plugins.runtime import Limits, Runtime
from tests.conftest import ABI_GUEST


def sample(name: str, **labels: str) -> float:
    value = REGISTRY.get_sample_value(name, labels)
    return 0.0 if value is None else value


def test_calls_checkouts_fuel_and_pool_gauges_are_exported() -> None:
    name = "metrics-probe"
    with Runtime(limits=Limits(max_instances=2)) as rt:
        plugin = rt.load(ABI_GUEST.read_text(), name=name)
        before_calls = sample("gonext_plugin_call_seconds_count", plugin=name, kind="filter")
        before_checkouts = sample("gonext_plugin_pool_checkout_total", plugin=name)
        before_fuel = sample("gonext_plugin_fuel_used_total", plugin=name)

        def work() -> None:
            for _ in range(50):
                assert plugin.invoke_filter("upper", "abc") == "ABC"

        threads = [threading.Thread(target=work) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        plugin.invoke_action("nobody")
        assert sample("gonext_plugin_call_seconds_count", plugin=name, kind="filter") == before_calls + 200
        assert sample("gonext_plugin_call_seconds_count", plugin=name, kind="action") >= 1
        assert sample("gonext_plugin_pool_checkout_total", plugin=name) == before_checkouts + 201
        assert sample("gonext_plugin_pool_checkout_wait_seconds_count", plugin=name) >= 201
        assert sample("gonext_plugin_fuel_used_total", plugin=name) > before_fuel
        assert 1 <= sample("gonext_plugin_pool_size", plugin=name) <= 2
        assert sample("gonext_plugin_pool_in_use", plugin=name) == 0
        bucket_inf = sample("gonext_plugin_call_seconds_bucket", plugin=name, kind="filter", le="+Inf")
        assert bucket_inf == sample("gonext_plugin_call_seconds_count", plugin=name, kind="filter")
