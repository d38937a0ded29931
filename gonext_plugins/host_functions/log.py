"""``log`` ``{"level"?, "message"}`` -> ``{"ok": true}``: one line in the plugin's own log, like
``gn_log`` but from JSON (for SDKs that only have ``gn_host_call``). Level is debug/info/warning/error
(or warn), any case, or 0-3; capability ``log`` is always granted.
"""

from __future__ import annotations

from typing import Any

from ..conf import settings
from ..host_rules import log_request
from ..logs import runtime_log_sink
from ._payload import slug


def log(plugin: Any, payload: Any) -> dict[str, Any]:
    """Queue one line (rate limited like ``gn_log``), cut to LOG_MAX_MESSAGE_BYTES."""
    name = slug(plugin)
    number, message = log_request(payload, settings.LOG_MAX_MESSAGE_BYTES, name)
    runtime_log_sink(name, number, message, "guest")
    return {"ok": True}
