"""``kv.*``: each plugin's own small key-value store (``PluginKV`` rows), within the KV quotas.

- ``kv.get`` ``{"key"}`` -> ``{"found": bool, "value": any}`` (``value`` is null when not found)
- ``kv.set`` ``{"key", "value", "ttlSeconds"?}`` -> ``{"ok": true}``; with ``ttlSeconds`` the key
  reads as absent once that many seconds have passed (the write clears an earlier expiry otherwise)
- ``kv.delete`` ``{"key"}`` -> ``{"deleted": bool}``
- ``kv.list`` ``{"prefix"?}`` -> ``{"keys": [str, ...]}`` (sorted)
- ``kv.incr`` ``{"key", "by"?}`` -> ``{"value": int}``: adds ``by`` (default 1) to an integer,
  a missing key counting from 0; keeps the key's expiry
- ``kv.cas`` ``{"key", "expected", "value"}`` -> ``{"ok": bool, "value": any}``: writes ``value``
  only when the key holds ``expected`` (null: absent, or holding null), and returns what is stored now

Keys are strings of 1 to 255 characters. Every write runs in one transaction that first locks the
plugin's row, so concurrent writers in any thread or process are serialized: the quota checks,
``incr``'s read-add-write and ``cas``'s compare-then-write cannot interleave (SQLite takes its write
lock at BEGIN, ``transaction_mode=IMMEDIATE``). Arithmetic is done in Python under that lock rather
than in SQL, because JSON arithmetic is not portable between SQLite and PostgreSQL.

Expiry: every read filters out expired rows; every write first deletes the plugin's expired rows
(under the lock), so they never count against the quotas.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, Final

import orjson
from django.db import IntegrityError, transaction
from django.db.models import Count, JSONField, Q, Sum, Value
from django.utils import timezone

from ..conf import settings
from ..errors import BadHostCallPayload, HostFunctionError, KVQuotaExceeded
from ..models import Plugin, PluginKV
from ._payload import fields, require_storable, slug

MAX_KEY_LENGTH = 255  # PluginKV.key
MAX_TTL_SECONDS = 10 * 365 * 24 * 3600  # ten years: longer is a typo, not a cache
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1  # what every guest language reads as an integer

clock: Callable[[], datetime] = timezone.now
"""The one place ``kv`` reads the time (expiry is computed and compared against it). A seam: the
TTL tests set it to a fixed instant instead of sleeping."""


class _Keep:
    """Marker for ``_store``: leave the row's expiry as it is (``kv.incr``)."""


KEEP: Final = _Keep()


def _key(payload: dict[str, Any], fn: str, plugin: str) -> str:
    key = payload["key"]
    if not isinstance(key, str) or not 1 <= len(key) <= MAX_KEY_LENGTH:
        raise BadHostCallPayload(f"{fn}: key must be a string of 1 to {MAX_KEY_LENGTH} characters",
                                 plugin=plugin)
    require_storable(key, f"{fn}: key", plugin)
    return key


def _live(now: datetime) -> Q:
    """Rows that have not expired at ``now``."""
    return Q(expires_at__isnull=True) | Q(expires_at__gt=now)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _same(a: Any, b: Any) -> bool:
    """JSON equality for ``kv.cas``: 1 is not 1.0 nor true, and object key order does not matter."""
    return orjson.dumps(a, option=orjson.OPT_SORT_KEYS) == orjson.dumps(b, option=orjson.OPT_SORT_KEYS)


def _lock(name: str, now: datetime) -> None:
    """Start a write: lock the plugin's row, then drop its expired keys so they neither read back
    nor count against the quotas. Call inside ``transaction.atomic()``."""
    list(Plugin.objects.select_for_update().filter(slug=name).values_list("pk", flat=True))
    PluginKV.objects.filter(plugin_slug=name, expires_at__lte=now).delete()


def _current(name: str, key: str) -> tuple[bool, Any]:
    """(found, value) of a key, under the lock taken by :func:`_lock` (expired rows are gone)."""
    row = PluginKV.objects.select_for_update().filter(plugin_slug=name, key=key) \
        .values_list("value", flat=True)
    for value in row:
        return True, value
    return False, None


def _store(name: str, key: str, value: Any, fn: str, expires_at: datetime | _Keep | None) -> None:
    """Write one key within the quotas: the one place values are checked and stored, for kv.set,
    kv.incr and kv.cas alike. The caller holds the lock (:func:`_lock`)."""
    require_storable(value, f"{fn} {key!r}: value", name)
    size = len(orjson.dumps(value))
    if size > settings.KV_MAX_VALUE_BYTES:
        raise KVQuotaExceeded(f"{fn} {key!r}: value of {size} bytes is over KV_MAX_VALUE_BYTES="
                              f"{settings.KV_MAX_VALUE_BYTES}", plugin=name)
    old = PluginKV.objects.filter(plugin_slug=name, key=key).values_list("size", flat=True).first()
    usage = PluginKV.objects.filter(plugin_slug=name).aggregate(keys=Count("pk"), total=Sum("size"))
    keys, total = usage["keys"], usage["total"] or 0
    if old is None and keys + 1 > settings.KV_MAX_KEYS:
        raise KVQuotaExceeded(f"{fn} {key!r}: a new key would make {keys + 1} keys, over "
                              f"KV_MAX_KEYS={settings.KV_MAX_KEYS}", plugin=name)
    new_total = total - (old or 0) + size
    # Growing past the total is refused; shrinking is allowed even when already over it
    # (the quota may have been lowered since the data was written).
    if new_total > settings.KV_MAX_TOTAL_BYTES and size > (old or 0):
        raise KVQuotaExceeded(f"{fn} {key!r}: the store would hold {new_total} bytes, over "
                              f"KV_MAX_TOTAL_BYTES={settings.KV_MAX_TOTAL_BYTES}", plugin=name)
    # A bare None would be SQL NULL (refused by the column); store JSON null instead.
    stored = Value(None, JSONField()) if value is None else value
    if old is None:
        PluginKV.objects.create(plugin_slug=name, key=key, value=stored, size=size,
                                expires_at=None if isinstance(expires_at, _Keep) else expires_at)
    else:
        changes: dict[str, Any] = {"value": stored, "size": size, "updated_at": timezone.now()}
        if not isinstance(expires_at, _Keep):
            changes["expires_at"] = expires_at
        PluginKV.objects.filter(plugin_slug=name, key=key).update(**changes)


def _write(name: str, fn: str, key: str, work: Callable[[datetime], dict[str, Any]]) -> dict[str, Any]:
    """Run ``work(now)`` in one transaction under the plugin's lock."""
    try:
        with transaction.atomic():
            now = clock()
            _lock(name, now)
            return work(now)
    except IntegrityError as exc:  # the same new key created by a writer that did not take the lock
        raise HostFunctionError(f"{fn} {key!r}: a concurrent write got there first; try again",
                                plugin=name) from exc


def _ttl(data: dict[str, Any], name: str) -> float | None:
    ttl = data.get("ttlSeconds")
    if ttl is None:
        return None
    if isinstance(ttl, bool) or not isinstance(ttl, int | float) or not math.isfinite(ttl) \
            or not 0 < ttl <= MAX_TTL_SECONDS:
        raise BadHostCallPayload(f"kv.set: ttlSeconds must be a number of seconds above 0 and at most "
                                 f"{MAX_TTL_SECONDS}", plugin=name)
    return float(ttl)


def kv_get(plugin: Any, payload: Any) -> dict[str, Any]:
    """Read one key of the plugin's own store (an expired key is absent)."""
    name = slug(plugin)
    key = _key(fields(payload, "kv.get", name, ["key"]), "kv.get", name)
    row = PluginKV.objects.filter(_live(clock()), plugin_slug=name, key=key).only("value").first()
    return {"found": row is not None, "value": None if row is None else row.value}


def kv_set(plugin: Any, payload: Any) -> dict[str, Any]:
    """Write one key, within the quotas, optionally expiring after ``ttlSeconds``."""
    name = slug(plugin)
    data = fields(payload, "kv.set", name, ["key", "value"], optional=["ttlSeconds"])
    key = _key(data, "kv.set", name)
    ttl = _ttl(data, name)
    value = data["value"]

    def work(now: datetime) -> dict[str, Any]:
        _store(name, key, value, "kv.set", None if ttl is None else now + timedelta(seconds=ttl))
        return {"ok": True}

    return _write(name, "kv.set", key, work)


def kv_incr(plugin: Any, payload: Any) -> dict[str, Any]:
    """Add ``by`` to an integer key atomically (a missing key counts from 0); the new value.
    Both ``by`` and the result stay within a signed 64-bit integer, which every guest can hold."""
    name = slug(plugin)
    data = fields(payload, "kv.incr", name, ["key"], optional=["by"])
    key = _key(data, "kv.incr", name)
    by = data.get("by", 1)
    if not _is_int(by) or not INT64_MIN <= by <= INT64_MAX:
        raise BadHostCallPayload("kv.incr: by must be an integer (a signed 64-bit one)", plugin=name)

    def work(now: datetime) -> dict[str, Any]:
        found, old = _current(name, key)
        if found and not _is_int(old):
            raise HostFunctionError(f"kv.incr {key!r}: the stored value is not an integer "
                                    f"({type(old).__name__})", plugin=name)
        new = (old if found else 0) + by
        if not INT64_MIN <= new <= INT64_MAX:
            raise HostFunctionError(f"kv.incr {key!r}: the result would overflow a signed 64-bit "
                                    "integer", plugin=name)
        _store(name, key, new, "kv.incr", KEEP)
        return {"value": new}

    return _write(name, "kv.incr", key, work)


def kv_cas(plugin: Any, payload: Any) -> dict[str, Any]:
    """Compare-and-set: store ``value`` only if the key holds ``expected`` (null: absent or null).
    ``ok`` says whether it did; ``value`` is what the key holds now, so a loser can retry from it.
    The written value has no expiry, as with a ``kv.set`` without ``ttlSeconds``."""
    name = slug(plugin)
    data = fields(payload, "kv.cas", name, ["key", "expected", "value"])
    key = _key(data, "kv.cas", name)
    expected, value = data["expected"], data["value"]

    def work(now: datetime) -> dict[str, Any]:
        found, current = _current(name, key)
        matches = current is None if expected is None else found and _same(current, expected)
        if not matches:
            return {"ok": False, "value": current}
        _store(name, key, value, "kv.cas", None)
        return {"ok": True, "value": value}

    return _write(name, "kv.cas", key, work)


def kv_delete(plugin: Any, payload: Any) -> dict[str, Any]:
    """Delete one key; ``deleted`` says whether it was there (an expired key was not)."""
    name = slug(plugin)
    key = _key(fields(payload, "kv.delete", name, ["key"]), "kv.delete", name)
    rows = PluginKV.objects.filter(plugin_slug=name, key=key)
    deleted, _ = rows.filter(_live(clock())).delete()
    rows.delete()  # an expired leftover, if any
    return {"deleted": bool(deleted)}


def kv_list(plugin: Any, payload: Any) -> dict[str, Any]:
    """The plugin's live keys starting with ``prefix`` (all when omitted), sorted."""
    name = slug(plugin)
    data = fields(payload if payload is not None else {}, "kv.list", name, optional=["prefix"])
    prefix = data.get("prefix", "")
    if not isinstance(prefix, str) or len(prefix) > MAX_KEY_LENGTH:
        raise BadHostCallPayload(f"kv.list: prefix must be a string of at most {MAX_KEY_LENGTH} "
                                 "characters", plugin=name)
    require_storable(prefix, "kv.list: prefix", name)
    rows = PluginKV.objects.filter(_live(clock()), plugin_slug=name, key__startswith=prefix).order_by("key")
    return {"keys": list(rows.values_list("key", flat=True)[: settings.KV_MAX_KEYS])}
