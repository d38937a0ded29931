"""``kv.*``: each plugin's own small key-value store (``PluginKV`` rows), within the KV quotas.

- ``kv.get`` ``{"key"}`` -> ``{"found": bool, "value": any}`` (``value`` is null when not found)
- ``kv.set`` ``{"key", "value"}`` -> ``{"ok": true}``
- ``kv.delete`` ``{"key"}`` -> ``{"deleted": bool}``
- ``kv.list`` ``{"prefix"?}`` -> ``{"keys": [str, ...]}`` (sorted)

Keys are strings of 1 to 255 characters.
"""

from __future__ import annotations

from typing import Any

import orjson
from django.db import IntegrityError, transaction
from django.db.models import Count, JSONField, Sum, Value
from django.utils import timezone

from ..conf import settings
from ..errors import BadHostCallPayload, HostFunctionError, KVQuotaExceeded
from ..models import Plugin, PluginKV
from ._payload import fields, require_storable, slug

MAX_KEY_LENGTH = 255  # PluginKV.key


def _key(payload: dict[str, Any], fn: str, plugin: str) -> str:
    key = payload["key"]
    if not isinstance(key, str) or not 1 <= len(key) <= MAX_KEY_LENGTH:
        raise BadHostCallPayload(f"{fn}: key must be a string of 1 to {MAX_KEY_LENGTH} characters",
                                 plugin=plugin)
    require_storable(key, f"{fn}: key", plugin)
    return key


def kv_get(plugin: Any, payload: Any) -> dict[str, Any]:
    """Read one key of the plugin's own store."""
    name = slug(plugin)
    key = _key(fields(payload, "kv.get", name, ["key"]), "kv.get", name)
    row = PluginKV.objects.filter(plugin_slug=name, key=key).only("value").first()
    return {"found": row is not None, "value": None if row is None else row.value}


def kv_set(plugin: Any, payload: Any) -> dict[str, Any]:
    """Write one key, within the quotas. The quota check and the write happen in one transaction
    that first locks the plugin's row, so concurrent writers (other threads or processes) are
    serialized and cannot together go over a quota (SQLite serializes writers anyway)."""
    name = slug(plugin)
    data = fields(payload, "kv.set", name, ["key", "value"])
    key = _key(data, "kv.set", name)
    value = data["value"]
    require_storable(value, f"kv.set {key!r}: value", name)
    size = len(orjson.dumps(value))
    if size > settings.KV_MAX_VALUE_BYTES:
        raise KVQuotaExceeded(f"kv.set {key!r}: value of {size} bytes is over KV_MAX_VALUE_BYTES="
                              f"{settings.KV_MAX_VALUE_BYTES}", plugin=name)
    try:
        with transaction.atomic():
            list(Plugin.objects.select_for_update().filter(slug=name).values_list("pk", flat=True))
            old = PluginKV.objects.select_for_update().filter(plugin_slug=name, key=key) \
                .values_list("size", flat=True).first()
            usage = PluginKV.objects.filter(plugin_slug=name).aggregate(keys=Count("pk"), total=Sum("size"))
            keys, total = usage["keys"], usage["total"] or 0
            if old is None and keys + 1 > settings.KV_MAX_KEYS:
                raise KVQuotaExceeded(f"kv.set {key!r}: a new key would make {keys + 1} keys, over "
                                      f"KV_MAX_KEYS={settings.KV_MAX_KEYS}", plugin=name)
            new_total = total - (old or 0) + size
            # Growing past the total is refused; shrinking is allowed even when already over it
            # (the quota may have been lowered since the data was written).
            if new_total > settings.KV_MAX_TOTAL_BYTES and size > (old or 0):
                raise KVQuotaExceeded(f"kv.set {key!r}: the store would hold {new_total} bytes, over "
                                      f"KV_MAX_TOTAL_BYTES={settings.KV_MAX_TOTAL_BYTES}", plugin=name)
            # A bare None would be SQL NULL (refused by the column); store JSON null instead.
            stored = Value(None, JSONField()) if value is None else value
            if old is None:
                PluginKV.objects.create(plugin_slug=name, key=key, value=stored, size=size)
            else:
                PluginKV.objects.filter(plugin_slug=name, key=key).update(
                    value=stored, size=size, updated_at=timezone.now())
    except IntegrityError as exc:  # the same new key created by a writer that did not take the lock
        raise HostFunctionError(f"kv.set {key!r}: a concurrent write got there first; try again",
                                plugin=name) from exc
    return {"ok": True}


def kv_delete(plugin: Any, payload: Any) -> dict[str, Any]:
    """Delete one key; ``deleted`` says whether it was there."""
    name = slug(plugin)
    key = _key(fields(payload, "kv.delete", name, ["key"]), "kv.delete", name)
    deleted, _ = PluginKV.objects.filter(plugin_slug=name, key=key).delete()
    return {"deleted": bool(deleted)}


def kv_list(plugin: Any, payload: Any) -> dict[str, Any]:
    """The plugin's keys starting with ``prefix`` (all when omitted), sorted."""
    name = slug(plugin)
    data = fields(payload if payload is not None else {}, "kv.list", name, optional=["prefix"])
    prefix = data.get("prefix", "")
    if not isinstance(prefix, str) or len(prefix) > MAX_KEY_LENGTH:
        raise BadHostCallPayload(f"kv.list: prefix must be a string of at most {MAX_KEY_LENGTH} "
                                 "characters", plugin=name)
    require_storable(prefix, "kv.list: prefix", name)
    rows = PluginKV.objects.filter(plugin_slug=name, key__startswith=prefix).order_by("key")
    return {"keys": list(rows.values_list("key", flat=True)[: settings.KV_MAX_KEYS])}
