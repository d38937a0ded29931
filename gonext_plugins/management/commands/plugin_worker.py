"""``manage.py plugin_worker``: django-tasks-db's ``db_worker`` on the ``plugin`` queue, made to
outlive a database outage.

``db_worker`` exits on the first ``OperationalError`` that is not a lock (a PostgreSQL restart, a
failover), so every worker of a cluster would need restarting after one. This worker waits for the
database instead and carries on; a job whose attempt was cut by the outage is left ``running`` and
taken back by stall recovery (``JOB_STALL_SECONDS``), like one whose worker was killed. It also
looks for stalled jobs on a timer (a quarter of the stall limit, at most a minute), not only before
each job it runs, so a killed worker's job comes back on a quiet site too. Same options as
``db_worker``; ``--queue-name`` defaults to ``plugin``.
"""

from __future__ import annotations

import logging
import threading
import time
from argparse import ArgumentParser
from typing import Any

from django.db import close_old_connections, connections
from django_tasks_db.management.commands import db_worker

from ...db_outage import DATABASE_DOWN
from ...jobs.enqueue import QUEUE
from ...jobs.recovery import RECOVERY_PERIOD, recover_stalled, stall_limit

logger = logging.getLogger("gonext_plugins.jobs")

OUTAGE_RETRY_SECONDS = (0.5, 1.0, 2.0, 5.0)
"""Waits between tries while the database is unreachable: short first (a restart takes seconds)."""


class OutageTolerantWorker(db_worker.Worker):
    """A ``db_worker`` loop that, when the database goes away, waits and starts over."""

    _recovering = False

    def run(self) -> None:
        if not self._recovering:
            self._recovering = True
            threading.Thread(target=self._recover_on_a_timer, name="gonext-job-recovery", daemon=True).start()
        failures = 0
        while self.running:
            try:
                super().run()
                return  # stopped (a signal, --batch, --max-tasks)
            except DATABASE_DOWN as exc:
                wait = OUTAGE_RETRY_SECONDS[min(failures, len(OUTAGE_RETRY_SECONDS) - 1)]
                failures += 1
                logger.warning("worker %s: the database is unavailable (%s); trying again in %g s",
                               self.worker_id, str(exc).strip().splitlines()[0] if str(exc) else exc, wait)
                for connection in connections.all(initialized_only=True):
                    connection.close()  # a cut connection is never reused
                self.startup_delay = False
                time.sleep(wait)
                close_old_connections()


    def _recover_on_a_timer(self) -> None:
        """Take back lost runs even while no job arrives (its own database connection)."""
        while self.running:
            time.sleep(min(RECOVERY_PERIOD, stall_limit() / 4))
            try:
                recover_stalled()
            except Exception:  # an outage, or anything else: the next pass tries again
                logger.warning("recovering stalled plugin jobs failed; trying again later", exc_info=True)
            finally:
                connections["default"].close()


class Command(db_worker.Command):
    help = "Run plugin jobs (db_worker on the plugin queue) and outlive database restarts"

    def add_arguments(self, parser: ArgumentParser) -> None:
        super().add_arguments(parser)
        parser.set_defaults(queue_name=QUEUE)

    def handle(self, *args: Any, **options: Any) -> None:
        # db_worker's handle builds its Worker from the module's global name; in this process (the
        # command's own) that name is the same class with the outage loop around it.
        db_worker.Worker = OutageTolerantWorker  # type: ignore[misc]
        super().handle(*args, **options)
