"""Background jobs of plugins on Django's Tasks framework: queue them, run them, record them.

Flow: site code calls :func:`enqueue` (or a plugin calls the ``jobs.enqueue`` host function, for
its own declared jobs only) → one task :func:`gonext_plugins.tasks.run_plugin_job` on queue
``plugin`` and a :class:`~gonext_plugins.models.PluginJobRun` row, in one transaction → any worker
(``manage.py db_worker --queue-name plugin``) → :func:`execute`: claim the row, bring the registry
in step with the database, call ``gn_handle_job`` → record the outcome, with a start and an end
line in the plugin's live log.

The package: :mod:`.enqueue` (the task, the jobs this process knows, :func:`enqueue`),
:mod:`.worker` (:func:`execute`, one delivery), :mod:`.recovery` (runs whose worker died). The
``jobs.enqueue`` host function lives with the other host functions in
``gonext_plugins.host_functions.jobs``. Note that ``gonext_plugins.jobs.enqueue`` is the function,
as it always was; the module is reached as ``from gonext_plugins.jobs.enqueue import ...``.

**The idempotency key** is the id of the first task (with a queue outside the database, such as
RQ, an id chosen at enqueue: see :func:`~.enqueue.queues_in_transaction`). The backend has no
retries of its own: a retry is a new task whose arguments carry the original key (``job_id=``)
and the attempt number, so the guest sees the same ``id`` in its job envelope on every attempt
and can use it to make its own side effects idempotent (ABI.md, job envelope).

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

from .enqueue import (
    DEFAULT_MAX_RETRIES,
    MAX_DELAY_SECONDS,
    QUEUE,
    DeclaredJob,
    backoff,
    declared,
    enqueue,
    register_jobs,
    run_plugin_job,
    set_runner,
    unregister_jobs,
)
from .recovery import STALL_SECONDS, maybe_recover_stalled, recover_stalled
from .worker import CLAIMABLE, TRANSIENT, execute

# The task runs the worker: installed here, so whatever reaches the task (its stored path imports
# gonext_plugins.tasks, which imports this package) has the worker loaded too.
set_runner(execute)

__all__ = [
    "CLAIMABLE", "DEFAULT_MAX_RETRIES", "MAX_DELAY_SECONDS", "QUEUE", "STALL_SECONDS", "TRANSIENT",
    "DeclaredJob", "backoff", "declared", "enqueue", "execute", "maybe_recover_stalled",
    "recover_stalled", "register_jobs", "run_plugin_job", "unregister_jobs",
]
