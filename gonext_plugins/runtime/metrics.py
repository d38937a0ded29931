"""Prometheus metrics of the runtime, module-level and labelled by plugin.

The hot path only touches pre-resolved label children (:class:`PluginMetrics`), and the pool gauges
are read at scrape time through ``set_function`` instead of being updated on every checkout.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from prometheus_client import Counter, Gauge, Histogram

_LATENCY_BUCKETS = (0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
                    0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

POOL_CHECKOUT_TOTAL = Counter("gonext_plugin_pool_checkout", "Instance checkouts from a plugin's pool.",
                              ["plugin"])
POOL_CHECKOUT_ERRORS_TOTAL = Counter("gonext_plugin_pool_checkout_errors",
                                     "Checkouts that failed (timeout, closed, instantiation).", ["plugin"])
POOL_CHECKOUT_WAIT_SECONDS = Histogram("gonext_plugin_pool_checkout_wait_seconds",
                                       "Time spent waiting for a free instance.", ["plugin"],
                                       buckets=_LATENCY_BUCKETS)
POOL_RECYCLE_TOTAL = Counter("gonext_plugin_pool_recycle", "Instances thrown away, by reason.",
                             ["plugin", "reason"])
POOL_SIZE = Gauge("gonext_plugin_pool_size", "Instances alive in a plugin's pool.", ["plugin"])
POOL_IN_USE = Gauge("gonext_plugin_pool_in_use", "Instances checked out of a plugin's pool.", ["plugin"])
CALL_SECONDS = Histogram("gonext_plugin_call_seconds", "Guest call latency.", ["plugin", "kind"],
                         buckets=_LATENCY_BUCKETS)
FUEL_USED_TOTAL = Counter("gonext_plugin_fuel_used", "Fuel (wasm instructions) consumed.", ["plugin"])
TRAPS_TOTAL = Counter("gonext_plugin_traps", "Guest calls that trapped, by kind.", ["plugin", "kind"])
SOFT_TIMEOUTS_TOTAL = Counter("gonext_plugin_soft_timeouts", "Calls that overran soft_timeout_ms.",
                              ["plugin"])

_gauge_owner: dict[str, object] = {}
_gauge_lock = threading.Lock()


class PluginMetrics:
    """The label children of one plugin, resolved once."""

    __slots__ = ("checkout", "checkout_errors", "checkout_wait", "fuel", "name", "soft_timeouts")

    def __init__(self, name: str) -> None:
        self.name = name
        self.checkout = POOL_CHECKOUT_TOTAL.labels(name)
        self.checkout_errors = POOL_CHECKOUT_ERRORS_TOTAL.labels(name)
        self.checkout_wait = POOL_CHECKOUT_WAIT_SECONDS.labels(name)
        self.fuel = FUEL_USED_TOTAL.labels(name)
        self.soft_timeouts = SOFT_TIMEOUTS_TOTAL.labels(name)

    def latency(self, kind: str) -> Histogram:
        return CALL_SECONDS.labels(self.name, kind)

    def trap(self, kind: str) -> None:
        TRAPS_TOTAL.labels(self.name, kind).inc()

    def recycle(self, reason: str) -> None:
        POOL_RECYCLE_TOTAL.labels(self.name, reason).inc()

    def bind_pool(self, owner: object, size: Callable[[], float], in_use: Callable[[], float]) -> None:
        """Read the pool gauges from ``owner`` at scrape time (the latest pool of a name wins)."""
        with _gauge_lock:
            _gauge_owner[self.name] = owner
            POOL_SIZE.labels(self.name).set_function(size)
            POOL_IN_USE.labels(self.name).set_function(in_use)

    def unbind_pool(self, owner: object) -> None:
        with _gauge_lock:
            if _gauge_owner.get(self.name) is owner:
                del _gauge_owner[self.name]
                POOL_SIZE.labels(self.name).set_function(lambda: 0.0)
                POOL_IN_USE.labels(self.name).set_function(lambda: 0.0)
