"""``jobs.enqueue`` ``{"job", "payload"?, "delaySeconds"?}`` -> ``{"id"}``: a plugin queues one of its
own declared jobs (``id`` is the job's idempotency key). The queuing itself is
:func:`gonext_plugins.jobs.enqueue`, the same as site code calls.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from ..errors import HostFunctionError, PluginError
from ..host_rules import enqueue_request, undeclared_job
from ..jobs import declared, enqueue
from ._payload import slug


def enqueue_host_function(plugin: Any, payload: Any) -> dict[str, Any]:
    """Queue one of the calling plugin's own declared jobs. There is no field to name another
    plugin: a job is addressed within the caller, so it cannot queue anyone else's."""
    name = slug(plugin)
    job, job_payload, delay = enqueue_request(payload, name)
    loaded = getattr(plugin, "context", None)
    manifest = getattr(loaded, "manifest", None)
    if manifest is None or manifest.job(job) is None or declared(name, job) is None:
        raise undeclared_job(job, name)
    try:
        run = enqueue(name, job, job_payload, timedelta(seconds=delay) if delay else None,
                      enqueued_by="plugin")
    except PluginError as exc:
        raise HostFunctionError(f"jobs.enqueue: {exc.message}", plugin=name) from exc
    return {"id": run.id}
