"""What every state change shares: the audit row, the generation bump, the signals sent on commit,
reading the plugin row (fresh, or under a row lock), and the :class:`Result` an operation returns.

Every operation runs in one transaction, writes an :class:`~gonext_plugins.models.AuditEvent`
(who, what, before and after), bumps the :class:`~gonext_plugins.models.Generation` number so
every process re-syncs, and sends its signal only once the transaction commits. This module knows
nothing of the process that runs plugins: the registry reacts to
:data:`~gonext_plugins.signals.generation_changed` (connected in ``AppConfig.ready``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import F
from django.dispatch import Signal
from django.utils import timezone

from .. import signals
from ..errors import LifecycleError, PluginNotFound
from ..manifest import Manifest, validate
from ..models import AuditEvent, Generation, Plugin, PluginVersion

Actor = Any  # a user, a string label ("cli", "system: quarantine"), or None


@dataclass(frozen=True)
class Result:
    """What an operation did: the plugin row, the version concerned, and whether anything changed."""

    plugin: Plugin
    version: PluginVersion | None
    changed: bool = True


def actor_fields(actor: Actor) -> dict[str, Any]:
    """The audit columns for ``actor``: a user row when there is one, always a readable label."""
    if actor is None:
        return {"actor": None, "actor_label": "system"}
    if isinstance(actor, str):
        return {"actor": None, "actor_label": actor}
    if getattr(actor, "is_authenticated", False):
        return {"actor": actor, "actor_label": actor.get_username()}
    return {"actor": None, "actor_label": str(actor)}


def audit(action: str, plugin: Plugin | None, actor: Actor, *, version: str = "", slug: str = "",
          **details: Any) -> AuditEvent:
    """One audit row: who did ``action`` to which plugin and version, with ``details``."""
    return AuditEvent.objects.create(
        action=action,
        plugin=plugin,
        plugin_slug=slug or (plugin.slug if plugin else ""),
        version=version,
        details=details,
        **actor_fields(actor),
    )


def bump_generation() -> None:
    """Tell every process that plugin state changed: they re-sync within ``SYNC_INTERVAL``, and
    this one at its next call after the commit (the registry receives
    :data:`~gonext_plugins.signals.generation_changed`)."""
    transaction.on_commit(lambda: signals.generation_changed.send_robust(sender=Generation))
    updated = Generation.objects.filter(pk=1).update(number=F("number") + 1, changed_at=timezone.now())
    if not updated:
        try:
            with transaction.atomic():
                Generation.objects.create(pk=1, number=1)
        except IntegrityError:
            Generation.objects.filter(pk=1).update(number=F("number") + 1, changed_at=timezone.now())


def current_generation() -> int:
    """The generation number in the database (0 before the first change)."""
    return Generation.objects.filter(pk=1).values_list("number", flat=True).first() or 0


def send_on_commit(signal: Signal, plugin: Plugin, version: PluginVersion | None, actor: Actor,
                   **details: Any) -> None:
    """Send ``signal`` once the transaction commits (never for a change that rolled back)."""
    def send() -> None:
        signal.send_robust(sender=Plugin, plugin=plugin, version=version, actor=actor, details=details)

    transaction.on_commit(send)


def resolve(plugin: Plugin | str) -> Plugin:
    """The plugin row for a row or a slug (:class:`PluginNotFound` when there is none)."""
    if isinstance(plugin, Plugin):
        return plugin
    try:
        return Plugin.objects.get(slug=plugin)
    except Plugin.DoesNotExist as exc:
        raise PluginNotFound(f"no plugin {plugin!r} is installed", plugin=str(plugin)) from exc


def fresh(plugin: Plugin | str) -> Plugin:
    """The plugin row as the database has it now: a caller's instance may be stale, and what gets
    compiled before a transaction must be what the transaction will find."""
    return resolve(plugin.slug if isinstance(plugin, Plugin) else plugin)


def lock(plugin: Plugin | str) -> Plugin:
    """Re-read the plugin row under a row lock (PostgreSQL) so concurrent operations serialize."""
    slug = plugin.slug if isinstance(plugin, Plugin) else plugin
    try:
        return Plugin.objects.select_for_update().get(slug=slug)
    except Plugin.DoesNotExist as exc:
        raise PluginNotFound(f"no plugin {slug!r} is installed", plugin=slug) from exc


def lock_running(plugin: Plugin | str) -> tuple[Plugin, PluginVersion, Manifest]:
    """:func:`lock`, for the changes that apply to the version a plugin runs (grants, settings):
    the locked row, its active version and that version's manifest."""
    locked = lock(plugin)
    version = locked.active_version
    if version is None:
        raise LifecycleError("the plugin has no version", plugin=locked.slug)
    return locked, version, manifest_of(version)


def manifest_of(version: PluginVersion) -> Manifest:
    """The validated manifest a stored version was installed with. Each distinct stored manifest is
    validated once per process: the registry reads every active plugin's manifest twice whenever
    the generation changes, and a schema check costs about a millisecond (most of loading 20
    plugins from the compiled cache)."""
    return _validated(json.dumps(version.manifest, sort_keys=True))


@lru_cache(maxsize=256)
def _validated(manifest_json: str) -> Manifest:
    # ``requires.host`` was checked at install; whether it still holds after the host is upgraded
    # is the compatibility rule's question (lifecycle.compat), not a reason for every read to fail.
    # A ManifestError is not cached: the next read reports it again.
    return validate(manifest_json, check_host=False)
