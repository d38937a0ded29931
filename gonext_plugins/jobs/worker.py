"""Running one delivery of a plugin job: claim it, bring the registry in step, call ``gn_handle_job``,
record the outcome (see the package's doc for the rules).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import orjson
from django.db import transaction
from django.db.models import DateTimeField, F, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from .. import logs
from ..errors import HookError, PluginClosed, PluginError, PluginTrap, PoolTimeout
from ..models import JobStatus, Plugin, PluginJobRun
from ..registry import registry
from ..stats import rollup
from .enqueue import DEFAULT_MAX_RETRIES, backoff, declared, enqueue_task
from .recovery import maybe_recover_stalled

CLAIMABLE = (JobStatus.QUEUED, JobStatus.RETRYING, JobStatus.WAITING)
# Host-side conditions worth another attempt besides traps: nothing is wrong with the plugin.
TRANSIENT = (PluginTrap, PoolTimeout, PluginClosed)


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
    result; the record in ``PluginJobRun`` is the source of truth. Counted in the stats rollup,
    which a worker flushes here (it serves no requests)."""
    outcome = _execute(slug, job, payload, key=key, attempt=attempt, task_id=task_id)
    if outcome["status"] in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.RETRYING):  # the guest ran
        rollup.count_job(slug, failed=outcome["status"] == JobStatus.FAILED)
    rollup.flush_if_due()
    return outcome


def _execute(slug: str, job: str, payload: Any, *, key: str, attempt: int, task_id: str) -> dict[str, Any]:
    maybe_recover_stalled()
    _ensure_row(key, slug, job, payload, attempt, task_id)
    if not _claim(key, attempt, task_id):
        PluginJobRun.objects.filter(pk=key).update(duplicates=F("duplicates") + 1)
        row: Mapping[str, Any] = (
            PluginJobRun.objects.filter(pk=key).values("status", "attempts").first() or {})
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
        enqueue_task(slug, job, payload, key=key, attempt=attempt + 1, run_after=run_after)


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
