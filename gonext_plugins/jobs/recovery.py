"""Runs whose worker died: a run still ``running`` long after its attempt began is retried (or,
with no retries left, failed as ``worker_lost``). Workers call :func:`maybe_recover_stalled` before
each job; ``manage.py plugin`` and tests call :func:`recover_stalled` directly.
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from .. import logs
from ..conf import settings
from ..models import JobStatus, PluginJobRun
from .enqueue import backoff, enqueue_task

logger = logging.getLogger("gonext_plugins.jobs")

STALL_SECONDS = 300.0
"""A guest call is bounded by ``HARD_TIMEOUT_MS``; a run still ``running`` this long after its
attempt began lost its worker (killed, machine gone) and is treated like a trap. The default of
``JOB_STALL_SECONDS`` (with ten hard timeouts, whichever is longer)."""
RECOVERY_PERIOD = 60.0
"""Longest time between two recovery passes of one worker (shorter when the stall limit is short)."""


def stall_limit() -> float:
    """Seconds after which a running attempt counts as lost: ``JOB_STALL_SECONDS`` when the site
    sets it (a cluster that wants a killed worker's job back sooner), else the safe default."""
    if settings.JOB_STALL_SECONDS is not None:
        return float(settings.JOB_STALL_SECONDS)
    return max(STALL_SECONDS, settings.HARD_TIMEOUT_MS / 1000 * 10)

_next_recovery = 0.0


def recover_stalled(*, stall_seconds: float | None = None) -> list[str]:
    """Retry (or, with no retries left, fail as ``worker_lost``) every run stuck in ``running``.
    Each run is taken back by one conditional UPDATE, so two processes recovering at once queue
    its next attempt once. Returns the keys recovered."""
    limit = stall_seconds if stall_seconds is not None else stall_limit()
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
                enqueue_task(run.plugin_slug, run.job, run.payload, key=run.pk,
                              attempt=run.attempts + 1, run_after=fields["run_after"])
        logs.log_event(run.plugin_slug, logs.WARNING,
                       f"job {run.job} {run.pk}: {message}; "
                       + ("retrying" if retry else "no retries left, failed (worker_lost)"))
        recovered.append(run.pk)
    return recovered


def maybe_recover_stalled() -> None:
    """Run :func:`recover_stalled` at most once per period per process (workers call it per job):
    a quarter of the stall limit, at most a minute, so a lost run is noticed soon after it is due."""
    global _next_recovery
    now = time.monotonic()
    if now < _next_recovery:
        return
    _next_recovery = now + min(RECOVERY_PERIOD, stall_limit() / 4)
    try:
        recover_stalled()
    except Exception:  # recovery is housekeeping: it must never fail the job at hand
        logger.exception("recovering stalled plugin jobs failed")
