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

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, Final

from django.db import IntegrityError, transaction
from django.db.models import Count, JSONField, Q, Sum, Value
from django.utils import timezone

from ..conf import settings
from ..errors import HostFunctionError
from ..host_rules import (
    INT64_MAX,
    INT64_MIN,
    MAX_KEY_LENGTH,
    MAX_TTL_SECONDS,
    KVQuotas,
    cas_matches,
    kv_check_quota,
    kv_incr_by,
    kv_incremented,
    kv_key,
    kv_list_prefix,
    kv_ttl,
    kv_value_size,
)
from ..models import Plugin, PluginKV
from ._payload import fields, slug

__all__ = ["INT64_MAX", "INT64_MIN", "MAX_KEY_LENGTH", "MAX_TTL_SECONDS", "kv_cas", "kv_delete", "kv_get",
           "kv_incr", "kv_list", "kv_set"]

clock: Callable[[], datetime] = timezone.now
"""The one place ``kv`` reads the time (expiry is computed and compared against it). A seam: the
TTL tests set it to a fixed instant instead of sleeping."""


class _Keep:
    """Marker for ``_store``: leave the row's expiry as it is (``kv.incr``)."""


KEEP: Final = _Keep()


def _live(now: datetime) -> Q:
    """Rows that have not expired at ``now``."""
    return Q(expires_at__isnull=True) | Q(expires_at__gt=now)


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
    quotas = KVQuotas(settings.KV_MAX_KEYS, settings.KV_MAX_VALUE_BYTES, settings.KV_MAX_TOTAL_BYTES)
    size = kv_value_size(value, fn, key, name, quotas)
    old = PluginKV.objects.filter(plugin_slug=name, key=key).values_list("size", flat=True).first()
    usage = PluginKV.objects.filter(plugin_slug=name).aggregate(keys=Count("pk"), total=Sum("size"))
    kv_check_quota(fn, key, size, old, usage["keys"], usage["total"] or 0, name, quotas)
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


def kv_get(plugin: Any, payload: Any) -> dict[str, Any]:
    """Read one key of the plugin's own store (an expired key is absent)."""
    name = slug(plugin)
    key = kv_key(fields(payload, "kv.get", name, ["key"]), "kv.get", name)
    row = PluginKV.objects.filter(_live(clock()), plugin_slug=name, key=key).only("value").first()
    return {"found": row is not None, "value": None if row is None else row.value}


def kv_set(plugin: Any, payload: Any) -> dict[str, Any]:
    """Write one key, within the quotas, optionally expiring after ``ttlSeconds``."""
    name = slug(plugin)
    data = fields(payload, "kv.set", name, ["key", "value"], optional=["ttlSeconds"])
    key = kv_key(data, "kv.set", name)
    ttl = kv_ttl(data, name)
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
    key = kv_key(data, "kv.incr", name)
    by = kv_incr_by(data, name)

    def work(now: datetime) -> dict[str, Any]:
        found, old = _current(name, key)
        new = kv_incremented(key, found, old, by, name)
        _store(name, key, new, "kv.incr", KEEP)
        return {"value": new}

    return _write(name, "kv.incr", key, work)


def kv_cas(plugin: Any, payload: Any) -> dict[str, Any]:
    """Compare-and-set: store ``value`` only if the key holds ``expected`` (null: absent or null).
    ``ok`` says whether it did; ``value`` is what the key holds now, so a loser can retry from it.
    The written value has no expiry, as with a ``kv.set`` without ``ttlSeconds``."""
    name = slug(plugin)
    data = fields(payload, "kv.cas", name, ["key", "expected", "value"])
    key = kv_key(data, "kv.cas", name)
    expected, value = data["expected"], data["value"]

    def work(now: datetime) -> dict[str, Any]:
        found, current = _current(name, key)
        if not cas_matches(found, current, expected):
            return {"ok": False, "value": current}
        _store(name, key, value, "kv.cas", None)
        return {"ok": True, "value": value}

    return _write(name, "kv.cas", key, work)


def kv_delete(plugin: Any, payload: Any) -> dict[str, Any]:
    """Delete one key; ``deleted`` says whether it was there (an expired key was not)."""
    name = slug(plugin)
    key = kv_key(fields(payload, "kv.delete", name, ["key"]), "kv.delete", name)
    rows = PluginKV.objects.filter(plugin_slug=name, key=key)
    deleted, _ = rows.filter(_live(clock())).delete()
    rows.delete()  # an expired leftover, if any
    return {"deleted": bool(deleted)}


def kv_list(plugin: Any, payload: Any) -> dict[str, Any]:
    """The plugin's live keys starting with ``prefix`` (all when omitted), sorted."""
    name = slug(plugin)
    prefix = kv_list_prefix(payload, name)
    rows = PluginKV.objects.filter(_live(clock()), plugin_slug=name, key__startswith=prefix).order_by("key")
    return {"keys": list(rows.values_list("key", flat=True)[: settings.KV_MAX_KEYS])}
