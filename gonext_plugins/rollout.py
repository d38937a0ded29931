"""Staged rollout, per request: which plugins in rollout this request runs, the figures of both
cohorts, and the watch that rolls a plugin back when its figures pass the thresholds.

A plugin in rollout is active everywhere (``lifecycle.rollout``); what changes is per request.
:class:`~gonext_plugins.middleware.RolloutMiddleware` calls :func:`begin` once per request: for
each rollout it decides whether the request is in the cohort (staff mode: the user is staff;
percent mode: a stable hash of the plugin's slug and the visitor's first-party cookie
``gonext_visitor`` falls under the percentage, so a visitor keeps their side) and puts the slugs it
is *not* in into a context variable that the hook bridge reads: their hooks pass the value through
as if they were not there (an upgrade's rollout: the previous version's hooks run instead).
Outside a request (jobs, commands, WebSocket consumers) nothing is
excluded: a plugin in rollout runs its jobs.

Each request's time is recorded per plugin in rollout as "with" or "without" it, in this process's
rows of :class:`~gonext_plugins.models.RolloutBucket` (per minute, flushed every
``ROLLOUT_CHECK_INTERVAL`` at request end: no cron). After a flush the process judges every rollout
(:func:`watch`) from the figures of all processes: the fault rate (faults per guest call, from the
stats rollup) and the added time (mean of the requests with it minus the mean of those without),
once each cohort has ``ROLLOUT_MIN_REQUESTS`` requests. Past ``ROLLOUT_MAX_FAULT_RATE`` or
``ROLLOUT_MAX_ADDED_MS`` the plugin is rolled back (``lifecycle.rollout.roll_back``, under a row
lock: one process does it, once), audited with the figures.
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
import threading
import time
from collections.abc import Iterable
from contextvars import ContextVar, Token
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from django.db import DatabaseError
from django.db.models import Count, Sum
from django.utils import timezone

from . import stats
from .conf import settings
from .lifecycle import rollout as lifecycle_rollout
from .models import PluginFault, PluginRollout, PluginState, RolloutBucket, RolloutMode
from .registry import registry
from .runtime.metrics import LightHistogram

logger = logging.getLogger("gonext_plugins.rollout")

COOKIE = "gonext_visitor"
"""The first-party cookie that keeps a visitor on one side of a percent rollout."""
COOKIE_MAX_AGE = 365 * 24 * 3600
SYSTEM_ACTOR = "system: rollout watch"

_excluded: ContextVar[frozenset[str]] = ContextVar("gonext_rollout_excluded", default=frozenset())


def excluded() -> frozenset[str]:
    """Slugs of the plugins in rollout whose hooks this request skips (empty outside requests)."""
    return _excluded.get()


# --- Who is in ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    """One rollout as a request sees it."""

    slug: str
    mode: str
    percent: int


def visitor_slot(slug: str, visitor: str) -> int:
    """The visitor's place from 0 to 9999 for ``slug``: stable, and independent between plugins
    (the slug salts it), so the same visitors are not the guinea pigs of every rollout."""
    digest = hashlib.sha256(f"{slug}\0{visitor}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % 10_000


def includes(rule: Rule, *, is_staff: bool, visitor: str) -> bool:
    """Whether a request of this visitor runs the plugin of ``rule``."""
    if rule.mode == RolloutMode.STAFF:
        return is_staff
    return visitor_slot(rule.slug, visitor) < rule.percent * 100


def valid_visitor(value: str | None) -> bool:
    return bool(value) and len(value or "") == 32 and all(c in "0123456789abcdef" for c in value or "")


def new_visitor() -> str:
    return secrets.token_hex(16)


_rules_cache: tuple[int, tuple[Rule, ...]] = (-2, ())
_rules_lock = threading.Lock()


def rules() -> tuple[Rule, ...]:
    """The running rollouts, read again only when the registry's generation moved (every rollout
    change bumps it), so a request pays one query only after a change."""
    global _rules_cache
    generation = registry.generation
    cached_generation, cached = _rules_cache
    if generation == cached_generation and generation >= 0:
        return cached
    found = tuple(Rule(slug, mode, percent) for slug, mode, percent in PluginRollout.objects.filter(
        plugin__state=PluginState.ACTIVE).values_list("plugin__slug", "mode", "percent"))
    with _rules_lock:
        _rules_cache = (generation, found)
    return found


def forget_rules() -> None:
    """Read the rollouts again at the next request (tests)."""
    global _rules_cache
    _rules_cache = (-2, ())


@dataclass
class Decision:
    """What :func:`begin` decided for one request, handed back to :func:`finish`."""

    rules: tuple[Rule, ...]
    excluded: frozenset[str]
    visitor: str
    set_cookie: bool
    token: Token[frozenset[str]] | None = None
    started: float = field(default_factory=time.perf_counter)


def begin(user: Any, cookie: str | None) -> Decision | None:
    """Decide the request's cohorts and exclude the plugins it is not in (None: no rollout runs)."""
    try:
        current = rules()
    except DatabaseError:
        logger.warning("rollouts not read: database not reachable", exc_info=True)
        return None
    if not current:
        return None
    visitor = cookie if cookie is not None and valid_visitor(cookie) else new_visitor()
    needs_visitor = any(rule.mode == RolloutMode.PERCENT for rule in current)
    is_staff = any(rule.mode == RolloutMode.STAFF for rule in current) and bool(
        getattr(user, "is_staff", False) and getattr(user, "is_active", False))
    out = frozenset(rule.slug for rule in current if not includes(rule, is_staff=is_staff, visitor=visitor))
    decision = Decision(current, out, visitor, set_cookie=needs_visitor and visitor != cookie)
    decision.token = _excluded.set(out)
    return decision


def finish(decision: Decision) -> None:
    """Record the request's time in each rollout's cohort, then flush and judge when due."""
    elapsed = time.perf_counter() - decision.started
    if decision.token is not None:
        _excluded.reset(decision.token)
    recorder.record(decision.rules, decision.excluded, elapsed)
    recorder.flush_if_due()


# --- Figures --------------------------------------------------------------------------------------


def _minute(now: datetime) -> datetime:
    return now.replace(second=0, microsecond=0)


@dataclass
class _Cohorts:
    """One plugin's request figures in one minute of this process."""

    with_side: LightHistogram = field(default_factory=LightHistogram)
    without_side: LightHistogram = field(default_factory=LightHistogram)


class Recorder:
    """This process's writer into ``RolloutBucket`` (the same upsert pattern as ``stats.Rollup``)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pid = 0
        self.process = ""
        self._rows: dict[tuple[str, datetime], _Cohorts] = {}
        self._dirty: set[tuple[str, datetime]] = set()
        self._last_flush = 0.0

    def _identify(self) -> None:
        """Name this process (again after a fork: a forked worker must not share its parent's rows)."""
        if self._pid != os.getpid():
            self._pid = os.getpid()
            self.process = stats.process_label()
            self._rows.clear()
            self._dirty.clear()

    def record(self, current: Iterable[Rule], out: frozenset[str], seconds: float) -> None:
        minute = _minute(timezone.now())
        with self._lock:
            self._identify()
            for rule in current:
                key = (rule.slug, minute)
                cohorts = self._rows.setdefault(key, _Cohorts())
                (cohorts.without_side if rule.slug in out else cohorts.with_side).observe(seconds)
                self._dirty.add(key)

    def flush_if_due(self) -> None:
        """Flush and judge when ``ROLLOUT_CHECK_INTERVAL`` has passed. Never raises: figures and the
        watch must not fail the request they ride on."""
        if time.monotonic() - self._last_flush < settings.ROLLOUT_CHECK_INTERVAL:
            return
        try:
            if self.flush():
                watch()
        except Exception:
            logger.exception("rollout watch failed")

    def flush(self) -> bool:
        """Write this process's changed rows; False when another thread is flushing or the database
        refused (the rows are kept for the next flush)."""
        if not self._lock.acquire(blocking=False):
            return False
        try:
            self._last_flush = time.monotonic()
            self._identify()
            rows = [RolloutBucket(
                plugin_slug=slug, minute=minute, process=self.process,
                with_requests=sum(c.with_side.counts), with_time=c.with_side.sum,
                with_histogram=list(c.with_side.counts), without_requests=sum(c.without_side.counts),
                without_time=c.without_side.sum, without_histogram=list(c.without_side.counts))
                for slug, minute in sorted(self._dirty) for c in [self._rows[(slug, minute)]]]
            try:
                if rows:
                    RolloutBucket.objects.bulk_create(
                        rows, update_conflicts=True, unique_fields=["plugin_slug", "minute", "process"],
                        update_fields=["with_requests", "with_time", "with_histogram", "without_requests",
                                       "without_time", "without_histogram"])
            except DatabaseError as exc:
                logger.warning("rollout figures not flushed (kept for the next flush): %s", exc)
                return False
            self._dirty.clear()
            current = _minute(timezone.now())
            for key in [key for key in self._rows if key[1] < current]:
                del self._rows[key]
            return True
        finally:
            self._lock.release()

    def reset(self) -> None:
        """Forget pending figures and flush at the next request (tests)."""
        with self._lock:
            self._rows.clear()
            self._dirty.clear()
            self._last_flush = 0.0


recorder = Recorder()


@dataclass(frozen=True)
class Figures:
    """A rollout's figures since it started, all processes together, and the thresholds."""

    with_requests: int
    without_requests: int
    with_mean_ms: float | None
    without_mean_ms: float | None
    with_p50_ms: float | None
    without_p50_ms: float | None
    added_ms: float | None
    calls: int
    faults: int
    fault_rate: float | None
    min_requests: int
    max_fault_rate: float
    max_added_ms: float
    fault_basis: str = "calls"
    """What ``calls`` counts: guest calls (a new activation), or the cohort's requests (an upgrade:
    the call counters are per plugin, its faults are per version)."""
    previous_faults: int | None = None
    previous_fault_rate: float | None = None
    """An upgrade: the previous version's faults per request outside the cohort, to compare."""

    def as_dict(self) -> dict[str, Any]:
        return {key: round(value, 4) if isinstance(value, float) else value
                for key, value in asdict(self).items()}

    def breach(self) -> str | None:
        """Why these figures call for a rollback, or None. The fault rate is judged once the
        cohort with the plugin has enough requests; the added time once both cohorts have."""
        enough_with = self.with_requests >= self.min_requests
        if enough_with and self.fault_rate is not None and self.fault_rate > self.max_fault_rate:
            return (f"fault rate {self.fault_rate:.1%} ({self.faults} of {self.calls} {self.fault_basis}) "
                    f"is over {self.max_fault_rate:.1%}")
        if (enough_with and self.without_requests >= self.min_requests and self.added_ms is not None
                and self.added_ms > self.max_added_ms):
            return f"requests with it took {self.added_ms:.1f} ms longer, over {self.max_added_ms:g} ms"
        return None


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000


def _summed_histogram(rows: Iterable[list[int]]) -> list[int]:
    total = [0] * stats.BUCKETS
    for histogram in rows:
        for i, count in enumerate(list(histogram or [])[:stats.BUCKETS]):
            total[i] += int(count)
    return total


def _rate(faults: int, total: int) -> float | None:
    # a trapped call may not be in ``total``: the rate never exceeds 1
    return faults / max(total, faults) if faults else (0.0 if total else None)


def figures(rollout: PluginRollout) -> Figures:
    """The figures of ``rollout`` from the minute it started (three or four queries). For an
    upgrade, the faults are each version's own (``PluginFault`` rows name it) per request of its
    cohort; for a new activation, faults per guest call from the stats rollup."""
    slug = rollout.plugin.slug
    since = _minute(rollout.started_at)
    buckets = RolloutBucket.objects.filter(plugin_slug=slug, minute__gte=since)
    sums = buckets.aggregate(wr=Sum("with_requests"), wt=Sum("with_time"), nr=Sum("without_requests"),
                             nt=Sum("without_time"))
    with_n, without_n = sums["wr"] or 0, sums["nr"] or 0
    with_mean = sums["wt"] / with_n if with_n else None
    without_mean = sums["nt"] / without_n if without_n else None
    histograms = list(buckets.values_list("with_histogram", "without_histogram"))
    previous = rollout.previous_version
    upgrade: dict[str, Any] = {}
    if previous is None:
        point = stats.summaries([slug], since).get(slug)
        calls, faults = (point.calls, point.faults) if point else (0, 0)
    else:
        by_version = dict(PluginFault.objects.filter(
            plugin_id=rollout.plugin_id, created_at__gte=since,
            version__in=[rollout.version.version, previous.version]).order_by().values("version")
            .annotate(n=Count("id")).values_list("version", "n"))
        calls, faults = with_n, by_version.get(rollout.version.version, 0)
        upgrade = {"fault_basis": "requests", "previous_faults": by_version.get(previous.version, 0),
                   "previous_fault_rate": _rate(by_version.get(previous.version, 0), without_n)}
    return Figures(
        with_requests=with_n, without_requests=without_n,
        with_mean_ms=_ms(with_mean), without_mean_ms=_ms(without_mean),
        with_p50_ms=_ms(stats.quantile(_summed_histogram(h for h, _ in histograms), 0.5)),
        without_p50_ms=_ms(stats.quantile(_summed_histogram(h for _, h in histograms), 0.5)),
        added_ms=None if with_mean is None or without_mean is None else _ms(with_mean - without_mean),
        calls=calls, faults=faults, fault_rate=_rate(faults, calls),
        min_requests=settings.ROLLOUT_MIN_REQUESTS, max_fault_rate=float(settings.ROLLOUT_MAX_FAULT_RATE),
        max_added_ms=float(settings.ROLLOUT_MAX_ADDED_MS), **upgrade)


def state(slug: str) -> dict[str, Any] | None:
    """A plugin's rollout for the admin, the API and the CLI: mode, share, version (and an upgrade's
    previous version, which the others run), who started it and when, and its figures; None when
    it is not in one."""
    rollout = PluginRollout.objects.select_related("plugin", "version", "previous_version") \
        .filter(plugin__slug=slug).first()
    if rollout is None:
        return None
    # What this process has counted goes in first: it flushes on its own every
    # ROLLOUT_CHECK_INTERVAL, and only at the end of a request, so the page showing the figures
    # read them up to that long (on a quiet site, until the next visit) behind its own counts.
    recorder.flush()
    stats.rollup.flush()
    previous = rollout.previous_version
    return {"mode": rollout.mode, "percent": rollout.percent, "version": rollout.version.version,
            "upgrade": previous is not None, "previous_version": previous.version if previous else None,
            "started_at": rollout.started_at.isoformat(), "started_by": rollout.started_by,
            "figures": figures(rollout).as_dict()}


def watch() -> list[str]:
    """Judge every running rollout; roll back those past a threshold. Returns the slugs rolled back."""
    if stats.rollup.enabled:
        stats.rollup.flush()  # this process's calls and faults up to now count in the judgement
    rolled_back = []
    for rollout in PluginRollout.objects.select_related("plugin", "version", "previous_version") \
            .filter(plugin__state=PluginState.ACTIVE):
        found = figures(rollout)
        why = found.breach()
        if why is None:
            continue
        result = lifecycle_rollout.roll_back(
            rollout.plugin.slug, SYSTEM_ACTOR, reason=f"rolled back automatically: {why}",
            figures=found.as_dict(), started_at=rollout.started_at)
        if result.changed:
            logger.warning("plugin %s rolled back automatically: %s", rollout.plugin.slug, why)
            rolled_back.append(rollout.plugin.slug)
    return rolled_back
