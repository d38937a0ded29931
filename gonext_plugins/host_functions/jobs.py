"""``jobs.enqueue`` ``{"job", "payload"?, "delaySeconds"?}`` -> ``{"id"}``: a plugin queues one of its
own declared jobs (``id`` is the job's idempotency key). The queuing itself is
:func:`gonext_plugins.jobs.enqueue`, the same as site code calls.
"""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any

from ..errors import BadHostCallPayload, HostFunctionError, PluginError
from ..jobs import MAX_DELAY_SECONDS, declared, enqueue
from ._payload import fields, slug


def enqueue_host_function(plugin: Any, payload: Any) -> dict[str, Any]:
    """Queue one of the calling plugin's own declared jobs. There is no field to name another
    plugin: a job is addressed within the caller, so it cannot queue anyone else's."""
    name = slug(plugin)
    data = fields(payload, "jobs.enqueue", name, ["job"], ["payload", "delaySeconds"])
    job = data["job"]
    if not isinstance(job, str) or not job:
        raise BadHostCallPayload("jobs.enqueue: job must be a non-empty string", plugin=name)
    delay = data.get("delaySeconds", 0)
    if isinstance(delay, bool) or not isinstance(delay, int | float) or not math.isfinite(delay) \
            or not 0 <= delay <= MAX_DELAY_SECONDS:
        raise BadHostCallPayload(f"jobs.enqueue: delaySeconds must be a number from 0 to {MAX_DELAY_SECONDS}",
                                 plugin=name)
    loaded = getattr(plugin, "context", None)
    manifest = getattr(loaded, "manifest", None)
    if manifest is None or manifest.job(job) is None or declared(name, job) is None:
        raise HostFunctionError(f"jobs.enqueue: {job!r} is not a job this plugin declares; a plugin "
                                "queues only its own declared jobs", plugin=name)
    try:
        run = enqueue(name, job, data.get("payload"), timedelta(seconds=delay) if delay else None,
                      enqueued_by="plugin")
    except PluginError as exc:
        raise HostFunctionError(f"jobs.enqueue: {exc.message}", plugin=name) from exc
    return {"id": run.id}
