"""State that must be the cluster's, not each process's: the shared cache and the log budget in it.

A site that runs several web processes and job workers names a Django cache every process shares
(Redis) in ``GONEXT_PLUGINS["SHARED_CACHE"]``. Without one (the default) each process keeps its own
log rate limit and throttle counts, as a single-machine site wants.

:class:`SharedLogBudget` is the log rate limit's cluster-wide half. The guest call that logs must
not wait for the network on every line, so a process takes a *lease* of up to :data:`LEASE_MAX`
lines at a time from a fixed-window counter in the cache (``incr`` with an expiry) and spends it
locally. Windows last ``max(1, LOG_BURST / LOG_RATE)`` seconds and allow ``max(LOG_BURST,
LOG_RATE)``-ish lines each (``rate x window``), so the long-run rate is ``LOG_RATE`` and one window
holds a burst. Leases are only granted up to the window's budget and expire with the window, so the
lines the whole cluster accepts in one window never exceed the budget; over a span of ``T`` seconds
they stay within ``budget x (ceil(T / window) + 1)`` (a flood straddling a window boundary can get two
budgets back to back: the fixed-window bound). Leased tokens a process does not use are lost with
the window, so a cluster may accept up to ``processes x (lease - 1)`` fewer lines than the budget.
When the cache fails, the process falls back to its own local bucket for :data:`RETRY_AFTER`
seconds, with one warning per outage, and never raises into the guest call.
"""

from __future__ import annotations

import logging
import threading
import time

from django.core.cache import BaseCache, caches

from .conf import settings

logger = logging.getLogger("gonext_plugins.cluster")

LEASE_MAX = 50
"""Most lines one process takes from the shared counter at a time (one cache round trip each)."""

LEASE_FRACTION = 20
"""A lease is at most this fraction of a window's budget, so a few processes cannot hold it all."""

RETRY_AFTER = 5.0
"""Seconds a process uses its local bucket after the shared cache failed, before trying again."""

KEY_PREFIX = "gonext_plugins:lograte"

_wall = time.time  # the windows' clock; the sink's lock-free drop reads the same one (sink._wall)


def shared_cache() -> BaseCache | None:
    """The cache every process shares (``SHARED_CACHE``), or None when the site runs per process."""
    alias = settings.SHARED_CACHE
    return caches[alias] if alias else None


class LeaseState:
    """One plugin's lease in this process; its owner (the sink's bucket) serializes access."""

    __slots__ = ("dry", "exhausted", "tokens", "window")

    def __init__(self) -> None:
        self.window = -1
        self.tokens = 0
        self.exhausted = False  # the window's budget is spent: drop without asking the cache again
        self.dry = (0.0, 0.0)
        """The exhausted window's [start, end) in wall-clock seconds, one tuple so that a reader
        without the lock sees both bounds of one window: a line logged inside it is dropped
        without the lock (``Sink.submit``). Both bounds, so a clock set back before it drops
        nothing; cleared when the lease moves to another window, so a clock set back *into* it
        asks the shared counter again (whose count of it may have expired)."""


class SharedLogBudget:
    """The cluster-wide per-plugin log budget, handed out in leases (see the module's doc)."""

    def __init__(self, cache: BaseCache, rate: float, burst: float) -> None:
        self.cache = cache
        self.window_seconds = max(1.0, burst / rate)
        self.budget = max(1, round(rate * self.window_seconds))
        self.lease_size = max(1, min(LEASE_MAX, self.budget // LEASE_FRACTION))
        self._down_until = 0.0
        self._warned = False
        self._lock = threading.Lock()

    def take(self, plugin: str, lease: LeaseState) -> bool | None:
        """One line's token: True (spend it), False (over the cluster's budget), or None when the
        shared cache is unreachable and the caller must use its local bucket."""
        now = _wall()
        window = int(now // self.window_seconds)
        if lease.window != window:  # a new window (or the clock set back): nothing of it is spent yet
            lease.window, lease.tokens, lease.exhausted, lease.dry = window, 0, False, (0.0, 0.0)
        if lease.tokens > 0:
            lease.tokens -= 1
            return True
        if lease.exhausted:
            return False
        if now < self._down_until:
            return None
        try:
            granted = self._lease(plugin, window)
        except Exception as exc:  # any cache failure: the hot path must not raise
            self._fail(exc, now)
            return None
        if self._warned:
            self._warned = False
            logger.warning("shared cache reachable again: the log rate limit is cluster-wide again")
        if granted <= 0:
            lease.exhausted = True
            lease.dry = (window * self.window_seconds, (window + 1) * self.window_seconds)
            return False
        lease.tokens = granted - 1
        return True

    def _lease(self, plugin: str, window: int) -> int:
        """Take up to ``lease_size`` tokens of ``window`` from the shared counter; how many we got."""
        key = f"{KEY_PREFIX}:{plugin}:{window}"
        try:
            used = int(self.cache.incr(key, self.lease_size))
        except ValueError:  # the window's first lease: create its counter (once, whoever wins)
            self.cache.add(key, 0, timeout=int(self.window_seconds * 2) + 1)
            used = int(self.cache.incr(key, self.lease_size))
        before = used - self.lease_size
        return max(0, min(self.lease_size, self.budget - before))

    def _fail(self, exc: Exception, now: float) -> None:
        with self._lock:
            self._down_until = now + RETRY_AFTER
            if not self._warned:
                self._warned = True
                logger.warning("shared cache unreachable (%s: %s): the log rate limit is per process "
                               "until it answers again", type(exc).__name__, exc)
