"""Prometheus metrics of the runtime, labelled by plugin.

A hook call is the product's inner loop, and ``prometheus_client``'s own counters and histograms
take a lock per update (about 0.3 µs for a counter, 0.6 µs for a histogram). So the per-call figures
(checkouts, checkout wait, call latency, fuel) live in plain integers of a :class:`PluginStats`,
updated while the pool's lock is already held, and a collector turns them into metric families at
scrape time. Rare events (traps, recycles, checkout errors, soft timeouts) use ordinary counters.
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections import deque
from collections.abc import Callable, Iterator

from prometheus_client import REGISTRY, Counter
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

LATENCY_BUCKETS = (0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
                   0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

POOL_CHECKOUT_ERRORS_TOTAL = Counter("gonext_plugin_pool_checkout_errors",
                                     "Checkouts that failed (timeout, closed, instantiation).", ["plugin"])
POOL_RECYCLE_TOTAL = Counter("gonext_plugin_pool_recycle", "Instances thrown away, by reason.",
                             ["plugin", "reason"])
TRAPS_TOTAL = Counter("gonext_plugin_traps", "Guest calls that trapped, by kind.", ["plugin", "kind"])
SOFT_TIMEOUTS_TOTAL = Counter("gonext_plugin_soft_timeouts", "Calls that overran soft_timeout_ms.",
                              ["plugin"])


class LightHistogram:
    """Bucket counts and a sum; the caller serializes updates (:class:`PluginStats`' lock)."""

    __slots__ = ("counts", "sum")

    def __init__(self) -> None:
        self.counts = [0] * (len(LATENCY_BUCKETS) + 1)  # the last one is +Inf
        self.sum = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.sum += seconds

    def buckets(self) -> list[tuple[str, float]]:
        total, out = 0, []
        for bound, count in zip((*map(str, LATENCY_BUCKETS), "+Inf"), list(self.counts), strict=True):
            total += count
            out.append((bound, float(total)))
        return out


RECENT_CALLS = 1024
"""Latencies kept per plugin for an exact median of recent calls (the admin shows it)."""


FOLD_EVERY = 32
"""Checkins queued before one of them folds the queue in (readers fold it whatever its length)."""

Checkin = tuple[int, float, "str | None", float, int]
"""One checkin's figures: (memory size or 0, seconds waited at checkout, call kind, seconds, fuel)."""


class PluginStats:
    """Per-plugin hot-path figures. One per plugin name for the life of the process, so counters
    stay monotonic across reloads and upgrades.

    A checkin never waits for the lock that serializes updates: a thread that keeps the GIL
    through its guest calls (``runtime.gil``) can be switched out by the interpreter while holding
    it, and the other thread blocking on it at its own checkin handed the GIL back, after which the
    two handed it to each other at every call (two threads on one plugin ran at 0.4x of one). A
    checkin queues its figures (``deque.append`` is atomic) and folds the queue in only once it
    holds :data:`FOLD_EVERY` of them, and only if the lock is free: taking a lock and counting one
    call at a time was a tenth of a tiny hook call. Every reader (:func:`existing_stats`,
    :func:`all_stats`, the Prometheus collector) folds the queue before it reads: no figure is
    lost or read late."""

    __slots__ = ("_lock", "_pending", "calls", "checkout_wait", "checkouts", "fuel", "memory_peak", "name",
                 "recent", "reused", "traps")

    def __init__(self, name: str) -> None:
        self.name = name
        self._lock = threading.Lock()
        self._pending: deque[Checkin] = deque()
        self.checkouts = 0
        self.checkout_wait = LightHistogram()
        self.calls: dict[str, LightHistogram] = {}
        self.fuel = 0
        self.recent: deque[float] = deque(maxlen=RECENT_CALLS)
        self.traps = 0  # every kind together: the cross-process rollup's fault count (rare: unlocked)
        # Calls of pure hooks answered from remembered results: unlocked, as a lock would cost more
        # than the answer; a lost increment under a race only understates it.
        self.reused = 0
        self.memory_peak = 0  # largest linear memory seen at a checkin since the rollup last took it

    def take_memory_peak(self) -> int:
        """The peak since the last take, and start a new interval (the stats rollup, once a flush)."""
        with self._lock:
            self._fold()
            peak, self.memory_peak = self.memory_peak, 0
        return peak

    def record_checkin(self, figures: Checkin) -> None:
        """Count one checkin (and the call it ended, if ``kind`` is set); never waits for the lock."""
        pending = self._pending
        pending.append(figures)
        if len(pending) >= FOLD_EVERY and self._lock.acquire(False):
            try:
                self._fold()
            finally:
                self._lock.release()

    def settled(self) -> PluginStats:
        """These figures with every queued checkin folded in: what a reader reads."""
        if self._pending:
            with self._lock:
                self._fold()
        return self

    def _fold(self) -> None:
        """Count the queued checkins (the lock held). Every call's figures pass here, in batches:
        so one loop over locals, with the totals written back once."""
        pending = self._pending
        if not pending:
            return
        take = pending.popleft
        calls = self.calls
        recent = self.recent.append
        wait = self.checkout_wait
        peak = self.memory_peak
        checkouts = unwaited = fuel_total = 0
        while pending:
            memory, waited, kind, seconds, fuel = take()
            checkouts += 1
            if memory > peak:
                peak = memory
            if waited:
                wait.observe(waited)
            else:
                unwaited += 1  # what observe(0.0) does, without the bisect
            if kind is not None:
                histogram = calls.get(kind)
                if histogram is None:
                    histogram = calls[kind] = LightHistogram()
                histogram.observe(seconds)
                recent(seconds)
                fuel_total += fuel
        self.memory_peak = peak
        self.checkouts += checkouts
        wait.counts[0] += unwaited
        self.fuel += fuel_total

    def record_call(self, kind: str, seconds: float, fuel: int) -> None:
        """Count one call made outside a pool's checkin (its figures only)."""
        with self._lock:
            self._fold()
            self._count_call(kind, seconds, fuel)

    def _count_call(self, kind: str, seconds: float, fuel: int) -> None:
        histogram = self.calls.get(kind)
        if histogram is None:
            histogram = self.calls[kind] = LightHistogram()
        histogram.observe(seconds)
        self.recent.append(seconds)
        self.fuel += fuel

    def call_count(self) -> int:
        return sum(sum(h.counts) for h in list(self.calls.values()))


_stats: dict[str, PluginStats] = {}
_pools: dict[str, tuple[object, Callable[[], float], Callable[[], float]]] = {}
_lock = threading.Lock()


def existing_stats(name: str) -> PluginStats | None:
    """The figures of ``name`` if this process ever ran it (without creating an empty entry)."""
    stats = _stats.get(name)
    return None if stats is None else stats.settled()


def all_stats() -> list[PluginStats]:
    return [stats.settled() for stats in list(_stats.values())]


def stats_for(name: str) -> PluginStats:
    stats = _stats.get(name)
    if stats is None:
        with _lock:
            stats = _stats.setdefault(name, PluginStats(name))
    return stats


class _RuntimeCollector(Collector):
    """Exports every plugin's :class:`PluginStats` and pool gauges at scrape time."""

    def collect(self) -> Iterator[Metric]:
        checkouts = CounterMetricFamily("gonext_plugin_pool_checkout",
                                        "Instance checkouts from a plugin's pool.", labels=["plugin"])
        wait = HistogramMetricFamily("gonext_plugin_pool_checkout_wait_seconds",
                                     "Time spent waiting for a free instance.", labels=["plugin"])
        latency = HistogramMetricFamily("gonext_plugin_call_seconds", "Guest call latency.",
                                        labels=["plugin", "kind"])
        fuel = CounterMetricFamily("gonext_plugin_fuel_used", "Fuel (wasm instructions) consumed.",
                                   labels=["plugin"])
        reused = CounterMetricFamily("gonext_plugin_results_reused",
                                     "Calls of pure hooks answered with a remembered result (no guest call).",
                                     labels=["plugin"])
        size = GaugeMetricFamily("gonext_plugin_pool_size", "Instances alive in a plugin's pool.",
                                 labels=["plugin"])
        in_use = GaugeMetricFamily("gonext_plugin_pool_in_use", "Instances checked out of a plugin's pool.",
                                   labels=["plugin"])
        for stats in all_stats():
            checkouts.add_metric([stats.name], stats.checkouts)
            wait.add_metric([stats.name], stats.checkout_wait.buckets(), stats.checkout_wait.sum)
            for kind, histogram in list(stats.calls.items()):
                latency.add_metric([stats.name, kind], histogram.buckets(), histogram.sum)
            fuel.add_metric([stats.name], stats.fuel)
            reused.add_metric([stats.name], stats.reused)
            _, size_of, in_use_of = _pools.get(stats.name, (None, lambda: 0.0, lambda: 0.0))
            size.add_metric([stats.name], size_of())
            in_use.add_metric([stats.name], in_use_of())
        yield from (checkouts, wait, latency, fuel, reused, size, in_use)


REGISTRY.register(_RuntimeCollector())


class PluginMetrics:
    """What one plugin's pool and calls report to."""

    __slots__ = ("checkout_errors", "name", "soft_timeouts", "stats")

    def __init__(self, name: str) -> None:
        self.name = name
        self.stats = stats_for(name)
        self.checkout_errors = POOL_CHECKOUT_ERRORS_TOTAL.labels(name)
        self.soft_timeouts = SOFT_TIMEOUTS_TOTAL.labels(name)

    def trap(self, kind: str) -> None:
        TRAPS_TOTAL.labels(self.name, kind).inc()
        self.stats.traps += 1

    def recycle(self, reason: str) -> None:
        POOL_RECYCLE_TOTAL.labels(self.name, reason).inc()

    def bind_pool(self, owner: object, size: Callable[[], float], in_use: Callable[[], float]) -> None:
        """Read the pool gauges from ``owner`` at scrape time (the latest pool of a name wins)."""
        with _lock:
            _pools[self.name] = (owner, size, in_use)

    def unbind_pool(self, owner: object) -> None:
        with _lock:
            if self.name in _pools and _pools[self.name][0] is owner:
                del _pools[self.name]
