"""The one Django task behind every plugin job (see ``gonext_plugins.jobs`` for the whole flow).

Django's Tasks API: ``django.tasks`` on Django 6, the ``django-tasks`` backport before it. The site's
``TASKS`` setting picks the backend; the app needs one that accepts the ``plugin`` queue (a system
check says so) and, for retry backoff, can defer (``django_tasks_db.DatabaseBackend`` can; run its
worker with ``manage.py db_worker --queue-name plugin``).
"""

from __future__ import annotations

from typing import Any

try:  # Django 6+
    from django.tasks import TaskContext, task  # type: ignore[import-not-found,unused-ignore]
except ImportError:  # Django 5.2: the backport, same API
    from django_tasks import TaskContext, task

from .jobs import QUEUE


@task(queue_name=QUEUE, takes_context=True)
def run_plugin_job(context: TaskContext, slug: str, job: str, payload: Any = None,
                   job_id: str | None = None, attempt: int = 1) -> dict[str, Any]:
    """Run job ``job`` of plugin ``slug`` with ``payload``.

    The first delivery's task id is the job's idempotency key; a retry is a new task carrying that
    key as ``job_id`` (and its ``attempt`` number), so the guest sees one id across attempts.
    """
    from .jobs import execute

    task_id = str(context.task_result.id)
    return execute(slug, job, payload, key=job_id or task_id, attempt=int(attempt), task_id=task_id)
