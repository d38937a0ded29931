"""``settings.get``: a plugin reads its own settings (no capability to ask for: they are its own).

- ``{}`` -> ``{"settings": {name: value, ...}}``: every effective value (stored, else default)
- ``{"key"}`` -> ``{"found": bool, "value": any}`` (``value`` is null when not found)

Secrets are included: they are the plugin's. There is no field naming another plugin, so a plugin
can read only its own. The values come from the calling ``LoadedPlugin``, which the registry
replaces when the settings change (a generation bump), so a call costs no query.
"""

from __future__ import annotations

from typing import Any

from ..host_rules import settings_key
from ._payload import slug

SELF = "self"
"""The capability of the functions about the plugin itself: always granted (``capabilities``)."""


def settings_get(plugin: Any, payload: Any) -> dict[str, Any]:
    """The calling plugin's settings: all of them, or one by name."""
    name = slug(plugin)
    key = settings_key(payload, name)
    values = getattr(getattr(plugin, "context", None), "settings", None) or {}
    if key is None:
        return {"settings": dict(values)}
    return {"found": key in values, "value": values.get(key)}
