"""Queuing plugin jobs: the one task, the jobs this process knows, and :func:`enqueue`.

The task :func:`run_plugin_job` is defined here, below the worker, because queuing a job and queuing
its retry both need it; what it runs is the worker's :func:`~gonext_plugins.jobs.worker.execute`,
installed through :func:`set_runner` by the package's ``__init__`` (so whatever imports the task
imports the worker too). Its stored path stays ``gonext_plugins.tasks.run_plugin_job``, where
``gonext_plugins/tasks.py`` re-exports it: task rows queued before this package existed, and those
queued now, resolve to the same object.
"""

from __future__ import annotations

import functools
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

import orjson
from django.db import transaction
from django.db.models import Count, Sum
from django.utils import timezone

from .. import logs
from ..bridge import json_default
from ..conf import settings
from ..errors import (
    InvalidPayload,
    JobQueueUnavailable,
    JobQuotaExceeded,
    JobsNotConfigured,
    PayloadTooLarge,
    PluginInactive,
    PluginNotFound,
    UnknownJob,
)
from ..host_rules import MAX_DELAY_SECONDS
from ..lifecycle import manifest_of
from ..manifest import format_path
from ..models import JobStatus, Plugin, PluginJobRun, PluginState
from ..registry import LoadedPlugin
from ..storable import unstorable_paths

try:  # Django 6+
    from django.tasks import TaskContext, task  # type: ignore[import-not-found,unused-ignore]
    from django.tasks.exceptions import InvalidTask as InvalidTaskError  # type: ignore[import-not-found,unused-ignore]
except ImportError:  # Django 5.2: the backport, same API
    from django_tasks import TaskContext, task  # type: ignore[assignment,no-redef,unused-ignore]
    from django_tasks.exceptions import InvalidTaskError  # type: ignore[assignment,no-redef,unused-ignore]
try:  # Django 6+
    from django.tasks.backends.dummy import DummyBackend  # type: ignore[import-not-found,unused-ignore]
    from django.tasks.backends.immediate import ImmediateBackend  # type: ignore[import-not-found,unused-ignore]
except ImportError:
    from django_tasks.backends.dummy import DummyBackend  # type: ignore[assignment,no-redef,unused-ignore]
    from django_tasks.backends.immediate import ImmediateBackend  # type: ignore[assignment,no-redef,unused-ignore]
from django_tasks_db.backend import DatabaseBackend

_IN_TRANSACTION: tuple[type, ...] = (DatabaseBackend, ImmediateBackend, DummyBackend)
"""Backends whose queue is the site's database, or that have no queue (see :func:`queues_in_transaction`)."""

QUEUE = "plugin"
DEFAULT_MAX_RETRIES = 3
# MAX_DELAY_SECONDS (host_rules): the longest ``delaySeconds`` a plugin may ask for, and the longest backoff.

TASK_MODULE = "gonext_plugins.tasks"
"""Where the task's stored path points (``<module>.run_plugin_job``); never change it."""


def backoff(attempt: int) -> float:
    """Seconds before attempt ``attempt + 1``: base, 2 * base, 4 * base, ..."""
    return float(min(float(settings.JOB_RETRY_BASE_SECONDS) * 2 ** (attempt - 1), MAX_DELAY_SECONDS))


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
    """The job ``name`` of plugin ``slug`` as loaded in this process, or None."""
    return _declared.get((slug, name))


# --- the task ------------------------------------------------------------------------------------

Runner = Callable[..., dict[str, Any]]
"""``runner(slug, job, payload, *, key, attempt, task_id) -> summary``: runs one delivery."""

_runner: Runner | None = None

F = TypeVar("F", bound=Callable[..., Any])


def set_runner(runner: Runner) -> None:
    """Install what :func:`run_plugin_job` runs (``worker.execute``): a hook, so this module, which
    the worker imports, does not import the worker."""
    global _runner
    _runner = runner


def _stored_at(module: str) -> Callable[[F], F]:
    """Give the task function the module its stored path names (the tasks framework records
    ``func.__module__ + "." + func.__qualname__`` and imports that path back in the worker)."""

    def mark(func: F) -> F:
        func.__module__ = module
        return func

    return mark


def _plugin_task(func: F) -> Any:
    """``func`` as a task on the ``plugin`` queue. A site whose default backend lacks that queue
    still starts (the backend refuses the queue when the task is defined, at import): the task then
    sits on the default queue, :func:`enqueue_task` refuses to queue anything, and system check
    E006 tells the site how to fix its ``TASKS``."""
    global queue_configured
    try:
        return task(queue_name=QUEUE, takes_context=True)(func)
    except InvalidTaskError:
        queue_configured = False
        return task(takes_context=True)(func)


queue_configured = True
"""False when the site's default Tasks backend does not accept the ``plugin`` queue."""


@_plugin_task
@_stored_at(TASK_MODULE)
def run_plugin_job(context: TaskContext, slug: str, job: str, payload: Any = None,
                   job_id: str | None = None, attempt: int = 1) -> dict[str, Any]:
    """Run job ``job`` of plugin ``slug`` with ``payload``.

    The first delivery's task id is the job's idempotency key; a retry is a new task carrying that
    key as ``job_id`` (and its ``attempt`` number), so the guest sees one id across attempts.
    """
    if _runner is None:  # only if this module were imported without its package's __init__
        raise RuntimeError("gonext_plugins.jobs.worker is not loaded: import gonext_plugins.jobs")
    task_id = str(context.task_result.id)
    return _runner(slug, job, payload, key=job_id or task_id, attempt=int(attempt), task_id=task_id)


@dataclass(frozen=True)
class Queued:
    """What :func:`enqueue_task` queued: the job's idempotency key, and the task's id when the
    backend handed one out now ("" when the task is only sent once the transaction commits)."""

    key: str
    task_id: str


def queues_in_transaction(backend: Any) -> bool:
    """Whether queuing a task on ``backend`` joins the caller's database transaction.

    The one rule for every backend: a task is queued in the same transaction as the record it runs
    only where the queue is the site's database (``django_tasks_db``) or there is no queue (the
    immediate and dummy backends of tests). Any other backend (RQ on Redis) keeps its queue outside
    the database, so its task is sent when the transaction commits: a worker can then never see a
    task before its record, and a rolled-back enqueue leaves no task behind.
    """
    return isinstance(backend, _IN_TRANSACTION)


def enqueue_task(slug: str, job: str, payload: Any, *, key: str | None, attempt: int,
                 run_after: datetime | None, raise_unsent: bool = True) -> Queued:
    """One delivery of the job on the ``plugin`` queue (``key`` None: the first one). A backend that
    cannot defer (the immediate backend of a test settings file) runs it now instead of later.

    ``raise_unsent``: whether a task a backend outside the database refuses at commit raises
    ``JobQueueUnavailable`` there; False when that commit is the site's own (an admin save that
    queued a job), whose caller is not ours to fail: the record still fails and the log says why."""
    if not queue_configured:
        raise JobsNotConfigured(f"the default Tasks backend has no {QUEUE!r} queue: add it to "
                                "TASKS['default']['QUEUES'] (system check gonext_plugins.E006)",
                                plugin=slug)
    queued = run_plugin_job
    backend = queued.get_backend()
    if run_after is not None and backend.supports_defer:
        queued = queued.using(run_after=run_after)
    if queues_in_transaction(backend):
        kwargs: dict[str, Any] = {} if key is None else {"job_id": key, "attempt": attempt}
        result = queued.enqueue(slug, job, payload, **kwargs)
        return Queued(key or str(result.id), str(result.id))
    # Outside the database: the key is chosen here (every task, the first included, carries it) and
    # the task is sent once the record that lets a worker claim this attempt has committed.
    key = key or uuid.uuid4().hex
    transaction.on_commit(functools.partial(_send_after_commit, queued, slug, job, payload, key, attempt,
                                            raise_unsent))
    return Queued(key, "")


def _send_after_commit(queued: Any, slug: str, job: str, payload: Any, key: str, attempt: int,
                       raise_unsent: bool) -> None:
    """Send a committed attempt's task; if the backend cannot take it (Redis down), fail the
    record with ``queue_unavailable`` rather than leave it waiting for a task that never comes."""
    try:
        queued.enqueue(slug, job, payload, job_id=key, attempt=attempt)
    except Exception as exc:
        message = f"the Tasks backend refused attempt {attempt}: {type(exc).__name__}: {exc}"
        PluginJobRun.objects.filter(pk=key, attempts=attempt - 1).exclude(
            status__in=PluginJobRun.FINAL).update(status=JobStatus.FAILED, error_code="queue_unavailable",
                                                   error=message[:2000], finished_at=timezone.now(),
                                                   run_after=None)
        logs.log_event(slug, logs.ERROR, f"job {job} {key}: not queued, {message}")
        if not raise_unsent:
            return
        raise JobQueueUnavailable(f"job {job} {key} could not be queued: {message}", plugin=slug) from exc


# --- enqueue -----------------------------------------------------------------------------------


def _normalize(payload: Any, slug: str) -> tuple[Any, int]:
    """The payload as plain JSON (task arguments are stored as JSON), within MAX_INPUT_BYTES and
    storable on every database (the guest gets it back exactly, so it is refused, not altered);
    with its size in bytes."""
    try:
        raw = orjson.dumps(payload, default=json_default)
    except TypeError as exc:
        raise InvalidPayload(f"job payload is not JSON-serializable: {exc.__cause__ or exc}",
                             plugin=slug) from exc
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


def enqueue(slug: str, job: str, payload: Any = None, run_after: datetime | timedelta | None = None, *,
            enqueued_by: str = "site") -> PluginJobRun:
    """Queue job ``job`` of plugin ``slug``; returns its record (``.id`` is the idempotency key).

    Raises ``PluginNotFound``, ``PluginInactive`` or ``UnknownJob`` (the active version does not
    declare it), ``InvalidPayload``/``PayloadTooLarge`` for a payload that cannot be sent or stored,
    ``JobQuotaExceeded`` past the plugin's JOB_MAX_QUEUED / JOB_MAX_QUEUED_BYTES (nothing is queued).
    Inside a transaction the job is queued when it commits (the task row and the record commit
    together).
    """
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
    in_callers_transaction = transaction.get_connection().in_atomic_block
    with transaction.atomic():
        _check_quota(slug, job, size)
        queued = enqueue_task(slug, job, data, key=None, attempt=1, run_after=run_after,
                              raise_unsent=not in_callers_transaction)
        run, _ = PluginJobRun.objects.get_or_create(pk=queued.key, defaults={
            "plugin_slug": slug, "version": version.version, "job": job, "payload": data,
            "payload_bytes": size,
            "max_retries": declaration.max_retries, "enqueued_by": enqueued_by, "enqueued_at": now,
            "run_after": run_after, "task_id": queued.task_id,
        })
    when = f", runs after {run_after:%H:%M:%S}" if run_after else ""
    logs.log_event(slug, logs.INFO, f"job {job} queued (id {run.id}, by {enqueued_by}{when})",
                   version=version.version)
    return run
