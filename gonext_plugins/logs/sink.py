"""The sink's half of plugin logging: the bounded queue and the per-plugin rate limit.

The runtime calls the sink from inside a guest call, so :class:`Sink` does as little as it can: a
per-plugin token bucket (``LOG_RATE`` lines/s, ``LOG_BURST`` burst), a length cap and an append to a
bounded in-memory queue. With a ``SHARED_CACHE`` the budget is the cluster's instead
(:class:`~gonext_plugins.cluster.SharedLogBudget`, leased a few dozen lines at a time); the local
bucket takes over while that cache is unreachable. Memory stays bounded under a flood: the rate
limit drops most lines before they are queued, and the queue itself holds at most
:data:`QUEUE_MAX` lines. Dropped lines are counted per plugin and come back as one "N lines
dropped" line per plugin and report period (:meth:`Sink.drop_reports`). The writer
(:mod:`.writing`) subclasses it and empties the queue.
"""

from __future__ import annotations

import itertools
import math
import threading
import time
from collections import deque

from .. import logs as _package
from ..cluster import LeaseState, SharedLogBudget, shared_cache
from ..conf import settings
from ..runtime.levels import WARNING

_monotonic = time.monotonic  # a global, not an attribute lookup, in the per-line path
_wall = time.time  # the shared budget's windows are wall-clock ones (cluster._wall)

QUEUE_MAX = 20_000
"""Lines waiting for the writer, across plugins. Past it lines are dropped (and counted), so a
stalled database cannot make a flood grow memory without bound."""

REPORT_INTERVAL = 1.0
"""Seconds between two "N lines dropped" lines of one plugin during a sustained flood."""

# A queued line: (unix time, plugin, version, level, message, source, dropped count).
Line = tuple[float, str, str, int, str, str, int]


def version_of(plugin: str) -> str:
    """The version a line of ``plugin`` is tagged with: the package's ``version_source`` hook, read
    at each call (``AppConfig.ready`` assigns ``logs.version_source``)."""
    return _package.version_source(plugin)


class _Bucket:
    """Token bucket and drop counter of one plugin. Its lock is never contended for long: it only
    guards a few float operations, so the guest call never waits on the writer.

    Why ``dry_until`` and a counter the lock does not guard: past its burst, a guest logging in a
    loop has nearly every line dropped, and taking the lock was half of what a dropped line cost.
    ``dry_until`` is the moment the next token comes (set under the lock when the bucket runs
    dry); before it a line is dropped with no lock, only counted, and a stale read of it can only
    send a line down the locked path, never drop one a token was there for. With a cluster-wide
    budget the same shortcut reads ``lease.dry``, the window whose budget the cluster has spent
    (:class:`~gonext_plugins.cluster.LeaseState`). The count is an
    ``itertools.count``: one ``next()`` is a single C call, which no other thread can interleave
    with under the GIL, where ``+= 1`` on an attribute is several steps. The bucket keeps the rate and
    burst it was made with, so its ``dry_until`` always agrees with them: new settings make new
    buckets (:meth:`Sink.reset`, ``writing._on_setting_changed``)."""

    __slots__ = ("burst", "drop_reads", "drops", "dry_until", "last", "lease", "lock", "rate", "reported",
                 "reported_at", "tokens")

    def __init__(self, rate: float, burst: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.last = _monotonic()
        self.dry_until = 0.0  # monotonic time of the next token, once the bucket has run dry
        self.drops = itertools.count()  # one next() per dropped line
        self.drop_reads = 0  # next() calls made to read the count (under the lock)
        self.reported = 0  # total_dropped at the last "N lines dropped" report
        self.reported_at = 0.0
        self.lease = LeaseState()  # this process's share of the cluster budget (with SHARED_CACHE)
        self.lock = threading.Lock()

    def count_held(self) -> int:
        """Lines dropped since the process started; the caller holds :attr:`lock` (readers take
        turns: each read is itself one ``next()``)."""
        total = next(self.drops) - self.drop_reads
        self.drop_reads += 1
        return total

    @property
    def total_dropped(self) -> int:
        """Lines dropped since the process started (benchmarks, metrics)."""
        with self.lock:
            return self.count_held()

    @property
    def dropped(self) -> int:
        """Lines dropped since the last report."""
        with self.lock:
            return self.count_held() - self.reported


class Sink:
    """The queue and the rate limiter. Queuing calls :meth:`_kick`, which the writer overrides."""

    def __init__(self) -> None:
        self.queue: deque[Line] = deque()
        self.buckets: dict[str, _Bucket] = {}
        self._buckets_lock = threading.Lock()
        self._config: tuple[float, float, int, int] | None = None
        self._shared: SharedLogBudget | bool | None = False  # False: not resolved yet

    def shared(self) -> SharedLogBudget | None:
        """The cluster-wide budget when ``SHARED_CACHE`` names a cache, else None (per process)."""
        shared = self._shared
        if shared is False:
            cache = shared_cache()
            rate, burst, _, _ = self.config()
            shared = self._shared = SharedLogBudget(cache, rate, burst) if cache is not None else None
        return shared if isinstance(shared, SharedLogBudget) else None

    def config(self) -> tuple[float, float, int, int]:
        """(rate, burst, max message chars, backlog), read once and re-read on setting changes."""
        cfg = self._config
        if cfg is None:
            cfg = self._config = (float(settings.LOG_RATE), float(settings.LOG_BURST),
                                  int(settings.LOG_MAX_MESSAGE_BYTES), int(settings.LOG_BACKLOG))
        return cfg

    def reset(self) -> None:
        """Forget buckets, queued lines and cached settings (tests, after ``override_settings``). The
        settings go first: a bucket made after the clear reads the new ones."""
        self._config = None
        self._shared = False
        self.queue.clear()
        self.buckets.clear()

    def _bucket(self, plugin: str) -> _Bucket:
        bucket = self.buckets.get(plugin)
        if bucket is None:
            with self._buckets_lock:
                rate, burst, _, _ = self.config()
                bucket = self.buckets.setdefault(plugin, _Bucket(rate, burst))
        return bucket

    def submit(self, plugin: str, level: int, message: str, source: str, version: str | None = None) -> bool:
        """Queue one rate-limited line; False when it was dropped (and counted). Never blocks on I/O.

        A guest logging in a loop calls this once a line, and past its burst nearly every call is a
        drop: so the drop is decided in this one frame (the token arithmetic inline, the shared
        budget looked up only when there is one), not in helper calls."""
        bucket = self.buckets.get(plugin) or self._bucket(plugin)
        shared = self._shared
        if shared is None:  # no cluster-wide budget: this process's bucket decides
            if _monotonic() < bucket.dry_until:  # no token yet: dropped without the lock
                next(bucket.drops)
                return False
        else:  # False: not resolved yet; else the cluster-wide budget
            dry = bucket.lease.dry  # the cluster's budget for this window is spent: no lock
            if dry[0] <= _wall() < dry[1]:
                next(bucket.drops)
                return False
            shared = self.shared()
        max_chars = (self._config or self.config())[2]
        queue = self.queue
        with bucket.lock:
            allowed = None  # None: this process's own bucket decides
            if shared is not None and len(queue) < QUEUE_MAX:
                allowed = shared.take(plugin, bucket.lease)
            if allowed is None:
                now = _monotonic()
                rate = bucket.rate
                tokens = bucket.tokens + (now - bucket.last) * rate
                bucket.last = now
                if not tokens <= bucket.burst:  # also NaN (an infinite rate times no time): full
                    tokens = bucket.burst
                if tokens >= 1.0 and len(queue) < QUEUE_MAX:
                    bucket.tokens = tokens - 1.0
                else:
                    bucket.tokens = tokens
                    if tokens < 1.0:
                        bucket.dry_until = now + (1.0 - tokens) / rate if rate > 0 else math.inf
                    allowed = False
            if allowed is False:
                next(bucket.drops)
                return False
        if len(message) > max_chars:  # bytes are cut exactly by the writer; this bounds memory
            message = message[:max_chars]
        if version is None:
            version = version_of(plugin)
        queue.append((time.time(), plugin, version, level, message, source, 0))
        self._kick()
        return True

    def event(self, plugin: str, level: int, message: str, version: str | None = None) -> None:
        """Queue a host event about a plugin (activated, trap, ...): rare, so not rate limited."""
        if version is None:
            version = version_of(plugin)
        self.queue.append((time.time(), plugin, version, level, message, "host", 0))
        self._kick()

    def _kick(self) -> None:
        """Called after each line queued; the writer starts or wakes its thread here."""

    def drop_reports(self, force: bool) -> list[Line]:
        """One "N lines dropped" line per plugin that dropped some, at most once per period."""
        now = time.monotonic()
        lines: list[Line] = []
        for plugin, bucket in list(self.buckets.items()):
            with bucket.lock:
                total = bucket.count_held()
                dropped = total - bucket.reported
                if not dropped or (not force and now - bucket.reported_at < REPORT_INTERVAL):
                    continue
                bucket.reported = total
                bucket.reported_at = now
            noun = "line" if dropped == 1 else "lines"
            lines.append((time.time(), plugin, version_of(plugin), WARNING,
                          f"{dropped} {noun} dropped: over the log rate limit", "host", dropped))
        return lines
