"""Background jobs of plugins on Django's Tasks framework: queue them, run them, record them.

Flow: site code calls :func:`enqueue` (or a plugin calls the ``jobs.enqueue`` host function, for
its own declared jobs only) → one task :func:`gonext_plugins.tasks.run_plugin_job` on queue
``plugin`` and a :class:`~gonext_plugins.models.PluginJobRun` row, in one transaction → any worker
(``manage.py db_worker --queue-name plugin``) → :func:`execute`: claim the row, bring the registry
in step with the database, call ``gn_handle_job`` → record the outcome, with a start and an end
line in the plugin's live log.

**The idempotency key** is the id of the first task. The backend has no retries of its own: a
retry is a new task whose arguments carry the original key (``job_id=``) and the attempt number,
so the guest sees the same ``id`` in its job envelope on every attempt and can use it to make its
own side effects idempotent (ABI.md, job envelope).

**At most one run per attempt.** A delivery runs only if it wins a conditional UPDATE of the row
(``status`` still queued/retrying/waiting and ``attempts == attempt - 1`` → running). That single
statement is atomic on SQLite and PostgreSQL alike, so two workers can never both run one attempt
of one id, and a late or repeated delivery of a finished id is skipped (and counted in
``duplicates``).

**Outcomes.** A trap or timeout (and a host-side hiccup: pool exhausted, plugin unloaded mid-call)
is retried after ``JOB_RETRY_BASE_SECONDS * 2**(attempt-1)`` up to the manifest's ``maxRetries``,
then fails. A guest ``error`` (and any other guest status) fails at once: the plugin answered.
A job whose plugin is not active here waits the same way and, after its retries, ends
``plugin_inactive``. A job whose plugin was uninstalled is ``skipped``.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
from django.db import transaction
from django.db.models import Count, DateTimeField, F, Sum, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from . import logs
from .conf import settings
from .errors import (
    HookError,
    InvalidPayload,
    JobQuotaExceeded,
    PayloadTooLarge,
    PluginClosed,
    PluginError,
    PluginInactive,
    PluginNotFound,
    PluginTrap,
    PoolTimeout,
    UnknownJob,
)
from .manifest import format_path
from .models import JobStatus, PluginJobRun
from .registry import LoadedPlugin
from .storable import unstorable_paths

logger = logging.getLogger("gonext_plugins.jobs")

QUEUE = "plugin"
DEFAULT_MAX_RETRIES = 3
MAX_DELAY_SECONDS = 30 * 86_400
"""Longest ``delaySeconds`` a plugin may ask for (and longest backoff): 30 days."""

CLAIMABLE = (JobStatus.QUEUED, JobStatus.RETRYING, JobStatus.WAITING)
# Host-side conditions worth another attempt besides traps: nothing is wrong with the plugin.
TRANSIENT = (PluginTrap, PoolTimeout, PluginClosed)


# --- which jobs this process knows (registered on load, dropped on unload) --------------------


@dataclass(frozen=True)
class DeclaredJob:
    """A job of a loaded plugin: addressed by (slug, name), so two plugins may share a name."""

    slug: str
    name: str
    version: str
    max_retries: int


_declared: dict[tuple[str, str], DeclaredJob] = {}
_declared_lock = threading.Lock()


def register_jobs(loaded: LoadedPlugin) -> None:
    """Registry listener: a loaded plugin holding ``jobs.enqueue`` has its manifest jobs registered
    (activation already refuses jobs without that grant; a later revoke unregisters them)."""
    if "jobs.enqueue" not in loaded.capabilities:
        return
    with _declared_lock:
        for job in loaded.manifest.jobs:
            _declared[(loaded.slug, job.name)] = DeclaredJob(loaded.slug, job.name, loaded.version,
                                                            job.max_retries)


def unregister_jobs(loaded: LoadedPlugin) -> None:
    """Registry listener: forget every job of a plugin that unloads (or is re-wired)."""
    with _declared_lock:
        for key in [key for key in _declared if key[0] == loaded.slug]:
            del _declared[key]


def declared(slug: str, name: str) -> DeclaredJob | None:
    return _declared.get((slug, name))


def declared_jobs() -> list[DeclaredJob]:
    """Every job registered in this process, sorted by plugin and name."""
    with _declared_lock:
        return sorted(_declared.values(), key=lambda job: (job.slug, job.name))


# --- enqueue -----------------------------------------------------------------------------------


def _task() -> Any:
    from .tasks import run_plugin_job

    return run_plugin_job


def _normalize(payload: Any, slug: str) -> tuple[Any, int]:
    """The payload as plain JSON (task arguments are stored as JSON), within MAX_INPUT_BYTES and
    storable on every database (the guest gets it back exactly, so it is refused, not altered);
    with its size in bytes."""
    from .bridge import json_default

    try:
        raw = orjson.dumps(payload, default=json_default)
    except TypeError as exc:
        raise InvalidPayload(f"job payload is not JSON-serializable: {exc.__cause__ or exc}", plugin=slug)
    if len(raw) > settings.MAX_INPUT_BYTES:
        raise PayloadTooLarge(f"job payload of {len(raw)} bytes is over MAX_INPUT_BYTES="
                              f"{settings.MAX_INPUT_BYTES}", plugin=slug)
    data = orjson.loads(raw)
    path = next(unstorable_paths(data), None)
    if path is not None:
        raise InvalidPayload(f"job payload at {format_path(path)} contains a NUL character, which cannot "
                             "be stored; encode binary data (for example as base64)", plugin=slug)
    return data, len(raw)


def _check_quota(slug: str, job: str, size: int) -> None:
    """Refuse a job that would put the plugin over JOB_MAX_QUEUED unfinished jobs or
    JOB_MAX_QUEUED_BYTES of their payloads. Called inside the enqueue transaction after locking the
    plugin's row, so concurrent enqueues (threads or processes) cannot together pass the cap."""
    from .models import Plugin

    list(Plugin.objects.select_for_update().filter(slug=slug).values_list("pk", flat=True))
    usage = PluginJobRun.objects.filter(plugin_slug=slug).exclude(status__in=PluginJobRun.FINAL) \
        .aggregate(jobs=Count("pk"), total=Sum("payload_bytes"))
    jobs, total = usage["jobs"], usage["total"] or 0
    max_jobs, max_bytes = settings.JOB_MAX_QUEUED, settings.JOB_MAX_QUEUED_BYTES
    if jobs + 1 > max_jobs:
        raise JobQuotaExceeded(f"job {job} not queued: the plugin already has {jobs} unfinished jobs, "
                               f"the most JOB_MAX_QUEUED={max_jobs} allows", plugin=slug)
    if total + size > max_bytes:
        raise JobQuotaExceeded(f"job {job} not queued: its payload of {size} bytes would make {total + size} "
                               f"bytes of unfinished jobs' payloads, over JOB_MAX_QUEUED_BYTES={max_bytes}",
                               plugin=slug)


def _enqueue_task(slug: str, job: str, payload: Any, *, key: str | None, attempt: int,
                  run_after: datetime | None) -> Any:
    """One delivery of the job on the ``plugin`` queue. A backend that cannot defer (the immediate
    backend of a test settings file) runs it now instead of later."""
    task = _task()
    if run_after is not None and task.get_backend().supports_defer:
        task = task.using(run_after=run_after)
    kwargs: dict[str, Any] = {}
    if key is not None:
        kwargs = {"job_id": key, "attempt": attempt}
    return task.enqueue(slug, job, payload, **kwargs)


def enqueue(slug: str, job: str, payload: Any = None, run_after: datetime | timedelta | None = None, *,
            enqueued_by: str = "site") -> PluginJobRun:
    """Queue job ``job`` of plugin ``slug``; returns its record (``.id`` is the idempotency key).

    Raises ``PluginNotFound``, ``PluginInactive`` or ``UnknownJob`` (the active version does not
    declare it), ``InvalidPayload``/``PayloadTooLarge`` for a payload that cannot be sent or stored,
    ``JobQuotaExceeded`` past the plugin's JOB_MAX_QUEUED / JOB_MAX_QUEUED_BYTES (nothing is queued).
    Inside a transaction the job is queued when it commits (the task row and the record commit
    together).
    """
    from .lifecycle import manifest_of
    from .models import Plugin, PluginState

    plugin = Plugin.objects.select_related("active_version").filter(slug=slug).first()
    if plugin is None:
        raise PluginNotFound(f"no plugin {slug!r} is installed", plugin=slug)
    version = plugin.active_version
    if plugin.state != PluginState.ACTIVE or version is None:
        raise PluginInactive(f"plugin {slug!r} is {plugin.state}; only an active plugin's jobs can be "
                             "queued", plugin=slug)
    manifest = manifest_of(version)
    declaration = manifest.job(job)
    if declaration is None:
        names = ", ".join(j.name for j in manifest.jobs) or "none"
        raise UnknownJob(f"plugin {slug!r} {version.version} declares no job {job!r} (it declares: "
                         f"{names})", plugin=slug)
    data, size = _normalize(payload, slug)
    now = timezone.now()
    if isinstance(run_after, timedelta):
        run_after = now + run_after
    elif run_after is not None and timezone.is_naive(run_after):
        raise ValueError("run_after must be an aware datetime or a timedelta")
    with transaction.atomic():
        _check_quota(slug, job, size)
        result = _enqueue_task(slug, job, data, key=None, attempt=1, run_after=run_after)
        run, _ = PluginJobRun.objects.get_or_create(pk=str(result.id), defaults={
            "plugin_slug": slug, "version": version.version, "job": job, "payload": data,
            "payload_bytes": size,
            "max_retries": declaration.max_retries, "enqueued_by": enqueued_by, "enqueued_at": now,
            "run_after": run_after, "task_id": str(result.id),
        })
    when = f", runs after {run_after:%H:%M:%S}" if run_after else ""
    logs.log_event(slug, logs.INFO, f"job {job} queued (id {run.id}, by {enqueued_by}{when})",
                   version=version.version)
    return run


# --- the jobs.enqueue host function ------------------------------------------------------------


def enqueue_host_function(plugin: Any, payload: Any) -> dict[str, Any]:
    """``jobs.enqueue`` ``{"job", "payload"?, "delaySeconds"?}`` → ``{"id"}``: queue one of the
    calling plugin's own declared jobs. There is no field to name another plugin: a job is
    addressed within the caller, so it cannot queue anyone else's."""
    from .builtin_host import BadHostCallPayload, HostFunctionError, _fields, _slug

    slug = _slug(plugin)
    data = _fields(payload, "jobs.enqueue", slug, ["job"], ["payload", "delaySeconds"])
    name = data["job"]
    if not isinstance(name, str) or not name:
        raise BadHostCallPayload("jobs.enqueue: job must be a non-empty string", plugin=slug)
    delay = data.get("delaySeconds", 0)
    if isinstance(delay, bool) or not isinstance(delay, int | float) or not math.isfinite(delay) \
            or not 0 <= delay <= MAX_DELAY_SECONDS:
        raise BadHostCallPayload(f"jobs.enqueue: delaySeconds must be a number from 0 to {MAX_DELAY_SECONDS}",
                                 plugin=slug)
    loaded = getattr(plugin, "context", None)
    manifest = getattr(loaded, "manifest", None)
    if manifest is None or manifest.job(name) is None or declared(slug, name) is None:
        raise HostFunctionError(f"jobs.enqueue: {name!r} is not a job this plugin declares; a plugin "
                                "queues only its own declared jobs", plugin=slug)
    try:
        run = enqueue(slug, name, data.get("payload"), timedelta(seconds=delay) if delay else None,
                      enqueued_by="plugin")
    except PluginError as exc:
        raise HostFunctionError(f"jobs.enqueue: {exc.message}", plugin=slug)
    return {"id": run.id}


# --- running one delivery ----------------------------------------------------------------------


def backoff(attempt: int) -> float:
    """Seconds before attempt ``attempt + 1``: base, 2 * base, 4 * base, ..."""
    return min(float(settings.JOB_RETRY_BASE_SECONDS) * 2 ** (attempt - 1), MAX_DELAY_SECONDS)


def _ensure_row(key: str, slug: str, job: str, payload: Any, attempt: int, task_id: str) -> None:
    """A record for a delivery queued without :func:`enqueue` (``run_plugin_job.enqueue(...)``
    called directly, or a backend that runs tasks before ``enqueue`` returns)."""
    if PluginJobRun.objects.filter(pk=key).exists():
        return
    job_decl = declared(slug, job)
    PluginJobRun.objects.get_or_create(pk=key, defaults={
        "plugin_slug": slug, "job": job, "payload": payload, "payload_bytes": len(orjson.dumps(payload)),
        "attempts": attempt - 1,
        "max_retries": job_decl.max_retries if job_decl else DEFAULT_MAX_RETRIES,
        "enqueued_at": timezone.now(), "task_id": task_id,
    })


def _claim(key: str, attempt: int, task_id: str) -> bool:
    """Win this attempt of ``key`` or learn that another delivery has it (or had it)."""
    now = timezone.now()
    return bool(PluginJobRun.objects.filter(pk=key, status__in=CLAIMABLE, attempts=attempt - 1).update(
        status=JobStatus.RUNNING, attempts=attempt, task_id=task_id, last_attempt_at=now, run_after=None,
        started_at=Coalesce(F("started_at"), Value(now, output_field=DateTimeField())),
    ))


def _finish(key: str, attempt: int, status: str, **fields: Any) -> None:
    PluginJobRun.objects.filter(pk=key, status=JobStatus.RUNNING, attempts=attempt).update(
        status=status, finished_at=timezone.now(), run_after=None, **fields)


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds < 10 else f"{seconds:.1f} s"


def execute(slug: str, job: str, payload: Any, *, key: str, attempt: int, task_id: str) -> dict[str, Any]:
    """Run one delivery of a job (the body of ``run_plugin_job``). Returns a summary for the task
    result; the record in ``PluginJobRun`` is the source of truth."""
    from .models import Plugin
    from .registry import registry

    maybe_recover_stalled()
    _ensure_row(key, slug, job, payload, attempt, task_id)
    if not _claim(key, attempt, task_id):
        PluginJobRun.objects.filter(pk=key).update(duplicates=F("duplicates") + 1)
        row = PluginJobRun.objects.filter(pk=key).values("status", "attempts").first() or {}
        logs.log_event(slug, logs.WARNING, f"job {job} {key}: duplicate delivery of attempt {attempt} "
                                           f"skipped (the job is {row.get('status')}, attempt "
                                           f"{row.get('attempts')})")
        return {"id": key, "status": "duplicate", "job_status": row.get("status")}

    registry.sync()  # one cheap query: a job after an upgrade runs on the new version
    loaded = registry.get(slug, sync=False)
    job_decl = declared(slug, job)
    max_retries = job_decl.max_retries if job_decl else \
        PluginJobRun.objects.filter(pk=key).values_list("max_retries", flat=True).first() or 0

    if loaded is None or job_decl is None:
        plugin = Plugin.objects.filter(slug=slug).first()
        if plugin is None:
            _finish(key, attempt, JobStatus.SKIPPED, error_code="plugin_uninstalled",
                    error=f"plugin {slug!r} is not installed any more")
            return {"id": key, "status": JobStatus.SKIPPED}
        if loaded is not None and loaded.manifest.job(job) is None:
            return _fail(slug, job, key, attempt, loaded.version, "unknown_job",
                         f"version {loaded.version} does not declare job {job!r}", 0.0)
        why = (f"plugin {slug!r} is {plugin.state}" if loaded is None
               else f"plugin {slug!r} does not hold jobs.enqueue")
        return _wait_or_give_up(slug, job, payload, key, attempt, max_retries, why)

    logs.log_event(slug, logs.INFO, f"job {job} {key}: started (attempt {attempt} of {max_retries + 1})",
                   version=loaded.version)
    started = time.perf_counter()
    try:
        result = loaded.invoke("job", job, payload, task_id=key)
    except TRANSIENT as exc:
        return _retry_or_fail(slug, job, payload, key, attempt, max_retries, loaded.version, exc,
                              time.perf_counter() - started)
    except HookError as exc:
        return _fail(slug, job, key, attempt, loaded.version, exc.status, exc.message,
                     time.perf_counter() - started)
    except PluginError as exc:
        return _fail(slug, job, key, attempt, loaded.version, exc.code, exc.message,
                     time.perf_counter() - started)
    elapsed = time.perf_counter() - started
    _finish(key, attempt, JobStatus.SUCCEEDED, version=loaded.version, result=result, error_code="",
            error="", duration_ms=elapsed * 1000)
    logs.log_event(slug, logs.INFO, f"job {job} {key}: succeeded in {_ms(elapsed)} (attempt {attempt})",
                   version=loaded.version)
    return {"id": key, "status": JobStatus.SUCCEEDED}


def _fail(slug: str, job: str, key: str, attempt: int, version: str, code: str, message: str,
          elapsed: float) -> dict[str, Any]:
    _finish(key, attempt, JobStatus.FAILED, version=version, error_code=code[:40], error=message,
            duration_ms=elapsed * 1000)
    logs.log_event(slug, logs.ERROR, f"job {job} {key}: failed ({code}) after {_ms(elapsed)}, not retried: "
                                     f"{message}", version=version)
    return {"id": key, "status": JobStatus.FAILED, "error": code}


def _schedule(slug: str, job: str, payload: Any, key: str, attempt: int, status: str,
              delay: float, **fields: Any) -> None:
    """Mark the record and queue attempt ``attempt + 1`` in one transaction (a worker cannot
    pick the next attempt before the record says it may run)."""
    run_after = timezone.now() + timedelta(seconds=delay)
    with transaction.atomic():
        PluginJobRun.objects.filter(pk=key, status=JobStatus.RUNNING, attempts=attempt).update(
            status=status, run_after=run_after, **fields)
        _enqueue_task(slug, job, payload, key=key, attempt=attempt + 1, run_after=run_after)


def _retry_or_fail(slug: str, job: str, payload: Any, key: str, attempt: int, max_retries: int,
                   version: str, exc: PluginError, elapsed: float) -> dict[str, Any]:
    code = exc.code
    guest = getattr(exc, "guest_message", None)
    message = exc.message + (f" (guest: {guest})" if guest and guest not in exc.message else "")
    if attempt > max_retries:
        _finish(key, attempt, JobStatus.FAILED, version=version, error_code=code, error=message,
                duration_ms=elapsed * 1000)
        logs.log_event(slug, logs.ERROR, f"job {job} {key}: failed ({code}) on attempt {attempt}, no "
                                         f"retries left: {message}", version=version)
        return {"id": key, "status": JobStatus.FAILED, "error": code}
    delay = backoff(attempt)
    _schedule(slug, job, payload, key, attempt, JobStatus.RETRYING, delay, version=version, error_code=code,
              error=message, duration_ms=elapsed * 1000)
    logs.log_event(slug, logs.WARNING, f"job {job} {key}: {code} on attempt {attempt} ({message}); retry "
                                       f"{attempt} of {max_retries} in {delay:g} s", version=version)
    return {"id": key, "status": JobStatus.RETRYING, "error": code}


def _wait_or_give_up(slug: str, job: str, payload: Any, key: str, attempt: int, max_retries: int,
                     why: str) -> dict[str, Any]:
    if attempt > max_retries:
        _finish(key, attempt, JobStatus.PLUGIN_INACTIVE, error_code="plugin_inactive",
                error=f"{why} after {attempt} attempts; the job was not run")
        logs.log_event(slug, logs.ERROR, f"job {job} {key}: gave up, {why} after {attempt} attempts")
        return {"id": key, "status": JobStatus.PLUGIN_INACTIVE}
    delay = backoff(attempt)
    _schedule(slug, job, payload, key, attempt, JobStatus.WAITING, delay, error_code="plugin_inactive",
              error=f"{why}; waiting (attempt {attempt} of {max_retries + 1})")
    logs.log_event(slug, logs.WARNING, f"job {job} {key}: waiting, {why}; next try in {delay:g} s "
                                       f"(attempt {attempt} of {max_retries + 1})")
    return {"id": key, "status": JobStatus.WAITING}


# --- runs whose worker died ----------------------------------------------------------------------

STALL_SECONDS = 300.0
"""A guest call is bounded by ``HARD_TIMEOUT_MS``; a run still ``running`` this long after its
attempt began lost its worker (killed, machine gone) and is treated like a trap."""

_next_recovery = 0.0


def recover_stalled(*, stall_seconds: float | None = None) -> list[str]:
    """Retry (or, with no retries left, fail as ``worker_lost``) every run stuck in ``running``.
    Each run is taken back by one conditional UPDATE, so two processes recovering at once queue
    its next attempt once. Returns the keys recovered."""
    limit = stall_seconds if stall_seconds is not None else max(
        STALL_SECONDS, settings.HARD_TIMEOUT_MS / 1000 * 10)
    cutoff = timezone.now() - timedelta(seconds=limit)
    recovered = []
    for run in PluginJobRun.objects.filter(status=JobStatus.RUNNING, last_attempt_at__lt=cutoff):
        message = f"the worker running attempt {run.attempts} stopped answering (no end after {limit:g} s)"
        retry = run.attempts <= run.max_retries
        with transaction.atomic():
            fields: dict[str, Any] = {"error_code": "worker_lost", "error": message}
            if retry:
                run_after = timezone.now() + timedelta(seconds=backoff(run.attempts))
                fields.update(status=JobStatus.RETRYING, run_after=run_after)
            else:
                fields.update(status=JobStatus.FAILED, finished_at=timezone.now(), run_after=None)
            taken = PluginJobRun.objects.filter(
                pk=run.pk, status=JobStatus.RUNNING, attempts=run.attempts).update(**fields)
            if not taken:
                continue
            if retry:
                _enqueue_task(run.plugin_slug, run.job, run.payload, key=run.pk,
                              attempt=run.attempts + 1, run_after=fields["run_after"])
        logs.log_event(run.plugin_slug, logs.WARNING,
                       f"job {run.job} {run.pk}: {message}; "
                       + ("retrying" if retry else "no retries left, failed (worker_lost)"))
        recovered.append(run.pk)
    return recovered


def maybe_recover_stalled() -> None:
    """Run :func:`recover_stalled` at most once a minute per process (workers call it per job)."""
    global _next_recovery
    now = time.monotonic()
    if now < _next_recovery:
        return
    _next_recovery = now + 60
    try:
        recover_stalled()
    except Exception:  # recovery is housekeeping: it must never fail the job at hand
        logger.exception("recovering stalled plugin jobs failed")
