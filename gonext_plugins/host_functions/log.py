"""``log`` ``{"level"?, "message"}`` -> ``{"ok": true}``: one line in the plugin's own log, like
``gn_log`` but from JSON (for SDKs that only have ``gn_host_call``). Level is debug/info/warning/error
(or warn), any case, or 0-3; capability ``log`` is always granted.
"""

from __future__ import annotations

from typing import Any

from ..conf import settings
from ..errors import BadHostCallPayload
from ..logs import runtime_log_sink
from ..runtime import levels
from ._payload import fields, slug


def log(plugin: Any, payload: Any) -> dict[str, Any]:
    """Queue one line (rate limited like ``gn_log``), cut to LOG_MAX_MESSAGE_BYTES."""
    name = slug(plugin)
    data = fields(payload, "log", name, ["message"], ["level"])
    number = levels.parse(data.get("level", "info"))
    if number is None:
        raise BadHostCallPayload("log: level must be debug, info, warning or error (or 0-3)", plugin=name)
    message = data["message"]
    if not isinstance(message, str):
        raise BadHostCallPayload("log: message must be a string", plugin=name)
    cap = settings.LOG_MAX_MESSAGE_BYTES
    raw = message.encode("utf-8")
    if len(raw) > cap:
        message = raw[:cap].decode("utf-8", "ignore") + " [truncated]"
    runtime_log_sink(name, number, message, "guest")
    return {"ok": True}
