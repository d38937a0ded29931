"""The stored path of the one Django task behind every plugin job: ``gonext_plugins.tasks.run_plugin_job``.

Task rows name the task by this path, and the worker imports it back, so it must keep resolving.
The task itself lives in :mod:`gonext_plugins.jobs.enqueue` (see :mod:`gonext_plugins.jobs` for the
whole flow); this module only re-exports it.

Django's Tasks API: ``django.tasks`` on Django 6, the ``django-tasks`` backport before it. The site's
``TASKS`` setting picks the backend; the app needs one that accepts the ``plugin`` queue (a system
check says so) and, for retry backoff, can defer (``django_tasks_db.DatabaseBackend`` can; run its
worker with ``manage.py db_worker --queue-name plugin``; so can ``django_tasks_rq.RQBackend``, see
docs/jobs.md "Queue engines").
"""

from .jobs import run_plugin_job

__all__ = ["run_plugin_job"]
