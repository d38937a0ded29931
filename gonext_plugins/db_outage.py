"""What a database outage (a restart, a failover) looks like to Django code, in one place: the
exceptions every interface turns into "try again" (a 503 for requests, close code 1013 for the log
WebSocket, a wait in ``manage.py plugin_worker``) and how long a client is told to wait."""

from __future__ import annotations

from django.db import InterfaceError, OperationalError

DATABASE_DOWN = (OperationalError, InterfaceError)
"""What the database driver raises while the server is unreachable (and what Django raises for a
connection cut under a running request)."""

RETRY_AFTER_SECONDS = 5
"""The ``Retry-After`` of a 503 answered during an outage."""
