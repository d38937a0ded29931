"""Per-plugin call statistics for the admin: this process's own, and the cluster's rollup.

Prometheus is the source of truth for a site that runs it; the admin wants honest figures without
one. The runtime counts every guest call in plain integers (``runtime.metrics.PluginStats``,
updated under the pool lock it holds anyway) and keeps a bounded reservoir of recent latencies.

- :data:`stats` reads them for *this process since it started* (the figures the admin shows, so
  labelled, when the rollup is off or has nothing yet).
- :data:`rollup` turns them into the cluster's figures: every ``STATS_FLUSH_INTERVAL`` seconds
  (checked at request end and after each job, never on the hot path) a process writes the deltas
  since its last flush into its own row of the current minute in ``PluginStatsBucket``, which every
  process of a site shares through the database. Rows older than ``STATS_RETENTION_HOURS`` are
  deleted on flush, at most once a minute per process: no cron.
- :func:`series` and :func:`summaries` read the rollup (calls, faults, p50/p99 estimated from the
  summed latency histograms, fuel, jobs, peak memory) for the admin and for charts.
- The same flush writes the site's request count per minute (``SiteRequestBucket``, counted between
  ``request_started`` and ``request_finished``), so :func:`added_ms_per_request` can say what each
  plugin's hook calls add to an average request.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import statistics
import threading
import time
from collections.abc import Iterable
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import DatabaseError
from django.utils import timezone

from .conf import settings
from .models import PluginStatsBucket, SiteRequestBucket
from .runtime.metrics import LATENCY_BUCKETS, PluginStats, all_stats, existing_stats

logger = logging.getLogger("gonext_plugins.stats")

BUCKETS = len(LATENCY_BUCKETS) + 1  # histogram slots: one per bound, and +Inf
CLEANUP_EVERY = 60.0
"""Seconds between two retention clean-ups by one process (each is one DELETE)."""


@dataclass(frozen=True)
class Snapshot:
    """One plugin's figures: calls since the process started and the median of recent calls."""

    calls: int
    median_ms: float | None


class CallStats:
    """The admin's view of the runtime's per-plugin figures, with a reset for tests."""

    def __init__(self) -> None:
        self._baseline: dict[str, int] = {}  # counts at the last reset: runtime counters never go back
        self.started_at = time.time()

    def snapshot(self, slug: str) -> Snapshot:
        runtime = existing_stats(slug)
        if runtime is None:
            return Snapshot(0, None)
        calls = runtime.call_count() - self._baseline.get(slug, 0)
        recent = list(runtime.recent)
        return Snapshot(calls, statistics.median(recent) * 1000 if recent and calls else None)

    def reset(self) -> None:
        """Count from zero again (tests); Prometheus keeps its monotonic totals."""
        for runtime in all_stats():
            self._baseline[runtime.name] = runtime.call_count()
            runtime.recent.clear()
        self.started_at = time.time()


stats = CallStats()


# --- The cluster's rollup --------------------------------------------------------------------------


@dataclass
class _Figures:
    """Additive call figures: what a process has seen, or what one row of the rollup holds."""

    calls: int = 0
    faults: int = 0
    time_sum: float = 0.0
    fuel: int = 0
    histogram: list[int] = field(default_factory=lambda: [0] * BUCKETS)
    jobs_run: int = 0
    jobs_failed: int = 0
    job_time: float = 0.0  # the part of time_sum spent in job calls (not in a request's hooks)
    memory: int = 0  # peak linear memory of one instance: a maximum, not a sum

    def add(self, other: _Figures, sign: int = 1) -> None:
        """Add (or, with ``sign=-1``, take away) the additive figures; memory keeps the larger peak."""
        if sign > 0:
            self.memory = max(self.memory, other.memory)
        self.job_time += sign * other.job_time
        self.calls += sign * other.calls
        self.faults += sign * other.faults
        self.time_sum += sign * other.time_sum
        self.fuel += sign * other.fuel
        self.jobs_run += sign * other.jobs_run
        self.jobs_failed += sign * other.jobs_failed
        for i, count in enumerate(other.histogram[:BUCKETS]):
            self.histogram[i] += sign * int(count)

    def empty(self) -> bool:
        return not (self.calls or self.faults or self.jobs_run or self.jobs_failed)


def _cumulative(runtime: PluginStats) -> _Figures:
    """A plugin's figures since this process started, from the runtime's counters."""
    figures = _Figures(faults=runtime.traps, fuel=runtime.fuel)
    for kind, histogram in list(runtime.calls.items()):
        figures.time_sum += histogram.sum
        if kind == JOB_KIND:
            figures.job_time += histogram.sum
        for i, count in enumerate(list(histogram.counts)):
            figures.histogram[i] += count
    figures.calls = sum(figures.histogram)
    return figures


JOB_KIND = "job"
"""The runtime's call kind of a job delivery (``Plugin.run_job``): its time is no request's."""

_request_started: ContextVar[float | None] = ContextVar("gonext_request_started", default=None)


def _minute(now: datetime) -> datetime:
    return now.replace(second=0, microsecond=0)



def process_label() -> str:
    """``host:pid:nonce``: one writing process's name in the rollup tables (the nonce tells apart
    two processes that reuse a pid, on one host or after a restart)."""
    return f"{socket.gethostname()[:50]}:{os.getpid()}:{secrets.token_hex(4)}"

class Rollup:
    """This process's writer into ``PluginStatsBucket`` (see the module's doc)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pid = 0
        self.process = ""
        self._seen: dict[str, _Figures] = {}  # cumulative runtime figures at the last collect
        self._rows: dict[tuple[str, datetime], _Figures] = {}  # this process's totals per minute
        self._dirty: set[tuple[str, datetime]] = set()
        self._requests: dict[datetime, list[float]] = {}  # minute -> [requests, seconds]: running totals
        self._requests_dirty: set[datetime] = set()
        self._last_flush = time.monotonic()
        self._last_cleanup = 0.0
        self.flushes = 0  # successful flushes (tests, the admin's "before the first flush")

    @property
    def enabled(self) -> bool:
        return settings.STATS_FLUSH_INTERVAL is not None

    def _identify(self) -> None:
        """Name this process (again after a fork: a forked worker must not share its parent's rows)."""
        if self._pid != os.getpid():
            self._pid = os.getpid()
            self.process = process_label()
            self._rows.clear()
            self._dirty.clear()
            self._requests.clear()
            self._requests_dirty.clear()

    def count_request(self, seconds: float | None) -> None:
        """A request of the site finished (``seconds`` long, when its start was seen)."""
        if not self.enabled:
            return
        with self._lock:
            self._identify()
            minute = _minute(timezone.now())
            totals = self._requests.setdefault(minute, [0, 0.0])
            totals[0] += 1
            totals[1] += seconds or 0.0
            self._requests_dirty.add(minute)

    def count_job(self, slug: str, failed: bool) -> None:
        """A job delivery of ``slug`` finished (a worker): counted in the current minute's row."""
        if not self.enabled:
            return
        with self._lock:
            self._identify()
            key = (slug, _minute(timezone.now()))
            row = self._rows.setdefault(key, _Figures())
            row.jobs_run += 1
            row.jobs_failed += failed
            self._dirty.add(key)

    def collect(self) -> None:
        """Add the runtime's figures since the last collect to the current minute's rows."""
        with self._lock:
            self._collect()

    def _collect(self) -> None:
        self._identify()
        minute = _minute(timezone.now())
        for runtime in all_stats():
            if ":" in runtime.name:  # a preview's "<slug>:preview" runtime: a rehearsal, not a cost
                continue
            now = _cumulative(runtime)
            seen = self._seen.get(runtime.name)
            self._seen[runtime.name] = now
            delta = _Figures()
            delta.add(now)
            if seen is not None:
                delta.add(seen, -1)
            delta.memory = runtime.take_memory_peak()
            if delta.empty():
                continue
            key = (runtime.name, minute)
            self._rows.setdefault(key, _Figures()).add(delta)
            self._dirty.add(key)

    def flush_if_due(self) -> None:
        """Flush when ``STATS_FLUSH_INTERVAL`` has passed (request end, after a job). Never raises."""
        interval = settings.STATS_FLUSH_INTERVAL
        if interval is not None and time.monotonic() - self._last_flush >= interval:
            self.flush()

    def flush(self) -> bool:
        """Write this process's changed rows; False when the database refused (kept for next time)
        or another thread is flushing. Never raises: a stats write must not fail a request."""
        if not self.enabled or not self._lock.acquire(blocking=False):
            return False
        try:
            self._last_flush = time.monotonic()
            self._collect()
            dirty = sorted(self._dirty)
            rows = [PluginStatsBucket(plugin_slug=slug, minute=minute, process=self.process,
                                      calls=f.calls, faults=f.faults, time_sum=f.time_sum, fuel_sum=f.fuel,
                                      histogram=f.histogram, jobs_run=f.jobs_run, jobs_failed=f.jobs_failed,
                                      job_time_sum=f.job_time, memory_peak=f.memory)
                    for slug, minute in dirty for f in [self._rows[(slug, minute)]]]
            requests = [SiteRequestBucket(minute=minute, process=self.process, requests=int(totals[0]),
                                          time_sum=totals[1])
                        for minute in sorted(self._requests_dirty) for totals in [self._requests[minute]]]
            try:
                if rows:
                    PluginStatsBucket.objects.bulk_create(
                        rows, update_conflicts=True, unique_fields=["plugin_slug", "minute", "process"],
                        update_fields=["calls", "faults", "time_sum", "fuel_sum", "histogram", "jobs_run",
                                       "jobs_failed", "job_time_sum", "memory_peak"])
                if requests:
                    SiteRequestBucket.objects.bulk_create(
                        requests, update_conflicts=True, unique_fields=["minute", "process"],
                        update_fields=["requests", "time_sum"])
                self._cleanup()
            except DatabaseError as exc:
                logger.warning("call figures not flushed (kept for the next flush): %s", exc)
                return False
            self._dirty.clear()
            self._requests_dirty.clear()
            current = _minute(timezone.now())
            for key in [key for key in self._rows if key[1] < current]:
                del self._rows[key]  # written, and no later delta goes to a past minute
            for minute in [minute for minute in self._requests if minute < current]:
                del self._requests[minute]
            self.flushes += 1
            return True
        finally:
            self._lock.release()

    def _cleanup(self) -> None:
        now = time.monotonic()
        if now - self._last_cleanup < CLEANUP_EVERY:
            return
        self._last_cleanup = now
        cutoff = timezone.now() - timedelta(hours=settings.STATS_RETENTION_HOURS)
        PluginStatsBucket.objects.filter(minute__lt=cutoff).delete()
        SiteRequestBucket.objects.filter(minute__lt=cutoff).delete()

    def reset(self) -> None:
        """Forget what was seen and pending (tests): the next collect counts from the runtime's now."""
        with self._lock:
            self._seen = {stats.name: _cumulative(stats) for stats in all_stats()}
            for runtime in all_stats():
                runtime.take_memory_peak()
            self._rows.clear()
            self._dirty.clear()
            self._requests.clear()
            self._requests_dirty.clear()
            self._last_cleanup = 0.0
            self.flushes = 0


rollup = Rollup()


def on_request_started(**kwargs: Any) -> None:
    """``request_started`` receiver (connected in ``AppConfig.ready``): when this request began."""
    _request_started.set(time.perf_counter())


def on_request_finished(**kwargs: Any) -> None:
    """``request_finished`` receiver (connected in ``AppConfig.ready``): count the request, and
    the flush, when due."""
    started = _request_started.get()
    _request_started.set(None)
    rollup.count_request(None if started is None else time.perf_counter() - started)
    rollup.flush_if_due()


# --- Reading the rollup ----------------------------------------------------------------------------


def quantile(histogram: list[int], q: float) -> float | None:
    """The ``q`` quantile in seconds, interpolated inside its bucket as Prometheus'
    ``histogram_quantile`` does; None without calls. The +Inf bucket answers its lower bound."""
    total = sum(histogram)
    if not total:
        return None
    rank = q * total
    below = 0
    for i, count in enumerate(histogram):
        if count and below + count >= rank:
            if i >= len(LATENCY_BUCKETS):
                return LATENCY_BUCKETS[-1]
            lower = LATENCY_BUCKETS[i - 1] if i else 0.0
            return lower + (LATENCY_BUCKETS[i] - lower) * (rank - below) / count
        below += count
    return LATENCY_BUCKETS[-1]


@dataclass(frozen=True)
class Point:
    """One step of a plugin's figures, all processes together."""

    start: datetime
    calls: int
    faults: int
    p50_ms: float | None
    p99_ms: float | None
    mean_ms: float | None
    fuel: int
    jobs_run: int
    jobs_failed: int
    hook_ms: float = 0.0  # guest time in hook calls (not jobs): what requests waited for
    memory_peak: int = 0  # bytes: the largest linear memory of one instance after a call

    @classmethod
    def empty(cls, start: datetime) -> Point:
        return cls.of(start, _Figures())

    @classmethod
    def of(cls, start: datetime, figures: _Figures) -> Point:
        def ms(seconds: float | None) -> float | None:
            return None if seconds is None else seconds * 1000

        return cls(start=start, calls=figures.calls, faults=figures.faults,
                   p50_ms=ms(quantile(figures.histogram, 0.5)), p99_ms=ms(quantile(figures.histogram, 0.99)),
                   mean_ms=ms(figures.time_sum / figures.calls) if figures.calls else None,
                   fuel=figures.fuel, jobs_run=figures.jobs_run, jobs_failed=figures.jobs_failed,
                   hook_ms=max(0.0, figures.time_sum - figures.job_time) * 1000, memory_peak=figures.memory)


def _rows(slugs: Iterable[str], since: datetime, until: datetime) -> Iterable[tuple[str, datetime, _Figures]]:
    fields = ("plugin_slug", "minute", "calls", "faults", "time_sum", "fuel_sum", "histogram", "jobs_run",
              "jobs_failed", "job_time_sum", "memory_peak")
    query = PluginStatsBucket.objects.filter(plugin_slug__in=list(slugs), minute__gte=_minute(since),
                                             minute__lt=until).values_list(*fields)
    for (slug, minute, calls, faults, time_sum, fuel, histogram, jobs_run, jobs_failed, job_time,
         memory) in query:
        figures = _Figures(calls=calls, faults=faults, time_sum=time_sum, fuel=fuel, jobs_run=jobs_run,
                           jobs_failed=jobs_failed, job_time=job_time, memory=memory)
        for i, count in enumerate(list(histogram or [])[:BUCKETS]):
            figures.histogram[i] = int(count)
        yield slug, minute, figures


def _steps(since: datetime, step: timedelta, until: datetime | None) -> tuple[datetime, datetime, int]:
    """The first minute, the end and the number of steps of a series (``step``: whole minutes)."""
    if step < timedelta(minutes=1) or step % timedelta(minutes=1):
        raise ValueError("step must be a whole number of minutes")
    start = _minute(since.astimezone(UTC))
    end = until or timezone.now()
    return start, end, max(1, -(-(end - start) // step))


def series(plugin: str, since: datetime, step: timedelta, until: datetime | None = None) -> list[Point]:
    """``plugin``'s figures from ``since`` (rounded down to its minute) to ``until`` (now), one
    :class:`Point` per ``step`` (a whole number of minutes), empty steps included: what charts draw."""
    start, end, steps = _steps(since, step, until)
    totals = [_Figures() for _ in range(steps)]
    for _, minute, figures in _rows([plugin], start, end):
        index = (minute - start) // step
        if 0 <= index < steps:
            totals[index].add(figures)
    return [Point.of(start + i * step, figures) for i, figures in enumerate(totals)]


def summaries(slugs: Iterable[str], since: datetime) -> dict[str, Point]:
    """One :class:`Point` per plugin from ``since`` to now (one query): the admin's last hour."""
    start = _minute(since.astimezone(UTC))
    totals: dict[str, _Figures] = {}
    for slug, _, figures in _rows(slugs, start, timezone.now() + timedelta(minutes=1)):
        totals.setdefault(slug, _Figures()).add(figures)
    return {slug: Point.of(start, figures) for slug, figures in totals.items()}


def cluster_figures_available() -> bool:
    """The admin shows the cluster's figures: the rollup is on and some process has flushed."""
    return rollup.enabled and PluginStatsBucket.objects.exists()


@dataclass(frozen=True)
class RequestPoint:
    """One step of the site's requests, all processes together."""

    start: datetime
    requests: int
    time_sum: float  # seconds


def request_series(since: datetime, step: timedelta, until: datetime | None = None) -> list[RequestPoint]:
    """The site's requests per ``step`` from ``since`` to ``until`` (now), aligned with :func:`series`."""
    start, end, steps = _steps(since, step, until)
    counts = [0] * steps
    seconds = [0.0] * steps
    query = SiteRequestBucket.objects.filter(minute__gte=start, minute__lt=end).values_list(
        "minute", "requests", "time_sum")
    for minute, requests, time_sum in query:
        index = (minute - start) // step
        if 0 <= index < steps:
            counts[index] += requests
            seconds[index] += time_sum
    return [RequestPoint(start + i * step, counts[i], seconds[i]) for i in range(steps)]


def added_ms(point: Point, requests: int) -> float | None:
    """A plugin's hook time per request in one step (or window); None when no request was counted."""
    return point.hook_ms / requests if requests else None


def added_ms_per_request(slugs: Iterable[str], since: datetime) -> dict[str, float | None]:
    """Each plugin's hook time from ``since`` to now divided by the site's requests in that time:
    what it adds to an average request (None for every plugin while no request was counted)."""
    start = _minute(since.astimezone(UTC))
    requests = sum(SiteRequestBucket.objects.filter(minute__gte=start).values_list("requests", flat=True))
    points = summaries(slugs, start)
    return {slug: added_ms(points[slug], requests) if slug in points else (0.0 if requests else None)
            for slug in slugs}
