"""Reading a host call's payload: the one place every built-in host function checks its input.

The runtime has already decoded the JSON (-3 otherwise) and checked the capability (-5); what is left
is the shape: an object with exactly the fields a function takes (a typo fails loudly), and strings
the database can store. Each refusal is a :class:`~gonext_plugins.errors.BadHostCallPayload`, whose
message is what the plugin's log shows.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..errors import BadHostCallPayload, UnknownPayloadFields
from ..manifest import format_path
from ..storable import unstorable_paths


def slug(plugin: Any) -> str:
    """The calling plugin's slug (the registry's LoadedPlugin when there is one)."""
    return str(getattr(getattr(plugin, "context", None), "slug", None) or plugin.name)


def fields(payload: Any, fn: str, plugin: str, required: Iterable[str] = (),
           optional: Iterable[str] = ()) -> dict[str, Any]:
    """Check a payload is an object with exactly these fields."""
    required, optional = tuple(required), tuple(optional)
    if not isinstance(payload, dict):
        raise BadHostCallPayload(f"{fn}: the payload must be a JSON object, not {type(payload).__name__}",
                                 plugin=plugin)
    missing = [f for f in required if f not in payload]
    if missing:
        raise BadHostCallPayload(f"{fn}: missing field(s) {', '.join(missing)}", plugin=plugin)
    extra = sorted(set(payload) - set(required) - set(optional))
    if extra:
        raise UnknownPayloadFields(f"{fn}: unknown field(s) {', '.join(extra)}; it takes "
                                 f"{', '.join((*required, *optional))}", plugin=plugin)
    return payload


def require_storable(value: Any, what: str, plugin: str) -> None:
    """Refuse data the plugin will read back when a string in it (a key, an object key, a value)
    holds a character no supported database stores; changing it would hand back other data."""
    path = next(unstorable_paths(value), None)
    if path is not None:
        where = "" if not path else f" at {format_path(path)}"
        raise BadHostCallPayload(f"{what}{where} contains a NUL character or a lone surrogate, which "
                                 "cannot be stored; encode binary data (for example as base64)",
                                 plugin=plugin)
